"""Throughput of ``identify_batch`` and of one Identifier shared by 1/2/4 threads, cold
start in a fresh process, and peak RSS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import SceneCtx

from pillsnap_sdk.bench.coldstart import measure_cold_start
from pillsnap_sdk.bench.scenes import MULTI

IMAGES = 8


def _run(benchmark: Any, fn: Any) -> Any:
    benchmark.group = f"throughput: {IMAGES} x multi-pill photo"
    out = benchmark.pedantic(fn, rounds=2, warmup_rounds=1, iterations=1)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    if stats is not None:
        benchmark.extra_info["images_per_s"] = IMAGES / stats.stats.median
    return out


def test_identify_batch(benchmark: Any, ctx: dict[str, SceneCtx]) -> None:
    c = ctx[MULTI]
    photos = [c.scene.data] * IMAGES
    _run(benchmark, lambda: c.idf.identify_batch(photos))


def test_identify_loop(benchmark: Any, ctx: dict[str, SceneCtx]) -> None:
    """The loop ``identify_batch`` must never lose to (same photos, one call each)."""
    c = ctx[MULTI]
    photos = [c.scene.data] * IMAGES
    _run(benchmark, lambda: [c.idf.identify(p) for p in photos])


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_shared_identifier_threads(benchmark: Any, ctx: dict[str, SceneCtx], threads: int) -> None:
    c = ctx[MULTI]
    photos = [c.scene.data] * IMAGES

    def job() -> Any:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(c.idf.identify, photos))

    _run(benchmark, job)


def test_cold_start_and_peak_rss(benchmark: Any, ctx: dict[str, SceneCtx]) -> None:
    """Fresh interpreter: import, from_bundle, first result; peak RSS after 10 more calls."""
    c = ctx[MULTI]
    benchmark.group = "cold start (fresh process)"
    cold = benchmark.pedantic(
        lambda: measure_cold_start(c.bundle, c.scene, runs=1), rounds=2, iterations=1
    )
    benchmark.extra_info.update(
        {
            "load_ms": cold.load_ms,
            "first_result_ms": cold.first_result_ms,
            "cold_start_ms": cold.cold_start_ms,
            "peak_rss_mb": cold.peak_rss_mb,
        }
    )
    assert cold.peak_rss_mb is None or cold.peak_rss_mb > 0
