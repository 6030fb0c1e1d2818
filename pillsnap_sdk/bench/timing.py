"""Rounds, percentiles and paired ratios: how every number of the bench is taken.

Why this shape: absolute milliseconds depend on the machine and on whatever else it runs
(CI boxes are shared; the reference machine has 2 cores and neighbours). Contenders are
therefore timed *interleaved* -- each once per round, in rotating order -- and compared by
the median of their per-round ratios, which stays put when the milliseconds do not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Stat", "measure_interleaved", "paired_ratio"]


@dataclass(frozen=True, slots=True)
class Stat:
    """Summary of one series of wall-clock samples, in milliseconds."""

    n: int
    p50: float
    p95: float
    mean: float
    min: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stat:
        if not samples:
            raise ValueError("no samples")
        arr = np.asarray(samples, dtype=np.float64)
        return cls(
            n=int(arr.size),
            p50=float(np.percentile(arr, 50)),
            p95=float(np.percentile(arr, 95)),
            mean=float(arr.mean()),
            min=float(arr.min()),
        )


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of per-round ratios ``numerator[i] / denominator[i]``.

    Pairing cancels slow drift in machine load (both samples of a round saw the same
    neighbours); the median drops rounds where a spike hit only one side.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired_ratio needs two equally long, non-empty series")
    ratios = [n / d for n, d in zip(numerator, denominator, strict=True) if d > 0]
    if not ratios:
        raise ValueError("denominator has no positive samples")
    return float(statistics.median(ratios))


def measure_interleaved(
    fns: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    warmup: int = 1,
    gap_s: float = 0.0,
) -> dict[str, list[float]]:
    """Time every function once per round, rotating the order each round (ms samples).

    Interleaving is what makes ratios fair on a shared machine: a burst of load lands on
    every contender of that round instead of on whichever ran during the burst. Rotation
    removes any first/second-in-round bias (caches, spinning thread pools); ``gap_s``
    lets another library's spinning worker threads go idle before the next call.
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if gap_s:
                time.sleep(gap_s)
            t0 = time.perf_counter()
            fns[name]()
            out[name].append((time.perf_counter() - t0) * 1000.0)
    return out
