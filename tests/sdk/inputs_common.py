"""Shared helpers and fixtures of the hostile-input tests (test_inputs*.py).

One place for the deadline, the result checks and the Identifier fixtures, so the
file-kind tests and the fuzz tests judge an outcome the same way.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

from pillsnap_sdk import Identifier, IdentifyResult, InvalidImageError

from .badfiles import (
    Case,
    array_cases,
    corpus,
)

T = TypeVar("T")

#: Wall-clock budget for one identify call. The slowest legitimate case here (a 100000x10
#: PNG) takes ~15 ms; a hang (e.g. a decoder looping on a crafted header) trips this.
DEADLINE_S = 20.0
TOP_K = 3

CORPUS = corpus()
ARRAYS = array_cases()
FILE_KINDS = ("str", "path", "bytes", "bytearray", "memoryview", "pil", "numpy")
HYPO = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- helpers ---------------------------------------------------------------------------------
def bounded(fn: Callable[[], T], seconds: float = DEADLINE_S) -> T:
    """Run ``fn`` in a watchdog thread: fail the test if it does not return in time.

    A thread (not ``signal.alarm``) because a hang inside a C decoder never returns to the
    interpreter to deliver a signal; the join timeout still notices it.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test thread below
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="identify-watchdog")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"call did not finish within {seconds} s (hang on hostile input?)")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def check_result(res: Any, size: tuple[int, int] | None, top_k: int = TOP_K) -> None:
    """The invariants every successful result satisfies, whatever the input was."""
    assert isinstance(res, IdentifyResult)
    if size is not None:
        assert res.image_size == size
    w, h = res.image_size
    assert w >= 1 and h >= 1
    assert res.mode_used in ("single", "combo")
    if not res.pills:
        assert res.mode_used == "combo" and "no_pill_detected" in res.warnings
    for pill in res.pills:
        assert 1 <= len(pill.candidates) <= top_k
        confs = [c.confidence for c in pill.candidates]
        assert all(0.0 <= c <= 1.0 and math.isfinite(c) for c in confs)
        assert confs == sorted(confs, reverse=True)
        assert pill.status in ("identified", "unknown")
        if pill.bbox is not None:
            b = pill.bbox
            assert 0.0 <= b.x1 < b.x2 <= w and 0.0 <= b.y1 < b.y2 <= h, b
    assert all(math.isfinite(v) and v >= 0.0 for v in res.timings_ms.values())
    assert IdentifyResult.model_validate_json(res.model_dump_json()) == res


def check_outcome(
    idf: Identifier,
    value: Any,
    expect: str,
    fragments: tuple[str, ...],
    size: tuple[int, int] | None,
    *,
    mode: str = "auto",
) -> IdentifyResult | InvalidImageError:
    """Run one input; anything but a valid result or InvalidImageError fails the test."""
    try:
        res = bounded(lambda: idf.identify(value, mode=mode, top_k=TOP_K))  # type: ignore[arg-type]
    except InvalidImageError as exc:
        msg = str(exc)
        assert expect in ("invalid", "either"), f"should decode, was refused: {msg}"
        assert len(msg) > 15, "refusal message too terse to act on"
        assert any(f.lower() in msg.lower() for f in fragments), (
            f"message does not say why (want one of {fragments}): {msg}"
        )
        return exc
    assert expect in ("ok", "either"), "hostile input was accepted instead of refused"
    check_result(res, size)
    return res


def as_kind(case: Case, kind: str, folder: Path) -> Any:
    """Present a corpus file as one input kind (None: the caller could not build it)."""
    path = folder / case.name
    if kind == "str":
        return str(path)
    if kind == "path":
        return path
    if kind == "bytes":
        return case.data
    if kind == "bytearray":
        return bytearray(case.data)
    if kind == "memoryview":
        return memoryview(case.data)
    if kind == "numpy":  # what a caller gets from np.asarray(Image.open(f)): any dtype/shape
        if case.expect == "invalid":
            return None  # the caller could not have decoded it (or it is a bomb)
        try:
            with Image.open(io.BytesIO(case.data)) as img:
                return np.asarray(img)
        except Exception:
            return None  # PIL cannot decode it (a damaged "either" case)
    try:  # pil: what a caller gets from Image.open (lazy: pixels are not decoded yet)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(case.data))
    except Exception:
        return None  # PIL itself refused it; nothing for the SDK to handle
