"""A 12 MP phone JPEG against the same scene at 0.3 MP: end to end and decode alone.

The 12 MP photo is the multi-pill photo enlarged (``upscaled_photo``); pytest-benchmark's
table puts both sizes side by side (group ``12 MP vs 0.3 MP``). The goal ratio itself is
asserted, interleaved, in ``test_goals.py``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from conftest import ROUNDS, SceneCtx

from pillsnap_sdk.bench.scenes import MULTI, upscaled_photo
from pillsnap_sdk.image import load_image

SIZES = ("0.3MP", "12MP")


@cache
def _big(data: bytes) -> bytes:
    return upscaled_photo(data)


def _photo(c: SceneCtx, size: str) -> bytes:
    return c.scene.data if size == "0.3MP" else _big(c.scene.data)


@pytest.mark.parametrize("size", SIZES)
def test_end_to_end(benchmark: Any, ctx: dict[str, SceneCtx], size: str) -> None:
    c = ctx[MULTI]
    data = _photo(c, size)
    benchmark.group = "12 MP vs 0.3 MP: identify (multi-pill scene)"
    res = benchmark.pedantic(lambda: c.idf.identify(data), rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info["decode_ms"] = res.timings_ms["decode"]
    assert res.pills


@pytest.mark.parametrize("size", SIZES)
def test_full_size_decode(benchmark: Any, ctx: dict[str, SceneCtx], size: str) -> None:
    """``load_image``: every pixel at full size (what the SDK did before DCT scaling)."""
    data = _photo(ctx[MULTI], size)
    benchmark.group = "12 MP vs 0.3 MP: full-size decode (load_image)"
    benchmark.pedantic(lambda: load_image(data), rounds=ROUNDS, warmup_rounds=1)
