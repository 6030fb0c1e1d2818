"""Images per second through one Identifier: ``identify_batch`` and threads sharing it.

Why: latency per photo says nothing about a kiosk or server that feeds photos back to
back; this shows whether batching or threads help on the machine at hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..pipeline import Identifier
from .scenes import Scene
from .timing import Stat, measure_interleaved, paired_ratio

__all__ = ["ThroughputResult", "measure_throughput"]


@dataclass
class ThroughputResult:
    """Images per second for a way of calling the SDK (wall time of the whole job)."""

    name: str
    images: int
    seconds: Stat
    images_per_s: float
    #: ``identify_batch`` only: its time / a loop of ``identify`` (paired, per round).
    vs_loop: float | None = None


def measure_throughput(
    idf: Identifier,
    scene: Scene,
    *,
    images: int = 8,
    rounds: int = 2,
    threads: Sequence[int] = (1, 2, 4),
) -> list[ThroughputResult]:
    """``identify_batch`` of ``images`` photos, a plain loop of ``identify`` over them, and
    ``images`` calls shared by T threads. The batch row carries its paired ratio to the
    loop (the batch must never lose to it)."""
    photos = [scene.data] * images
    batch, loop = f"identify_batch({images})", f"identify x{images}, loop"
    fns: dict[str, Callable[[], object]] = {
        batch: lambda: idf.identify_batch(photos),
        loop: lambda: [idf.identify(p) for p in photos],
    }

    def threaded(n: int) -> Callable[[], object]:
        def job() -> object:
            with ThreadPoolExecutor(max_workers=n) as pool:
                return list(pool.map(idf.identify, photos))

        return job

    for n in threads:
        fns[f"identify x{images}, {n} thread{'s' if n > 1 else ''}"] = threaded(n)
    s = measure_interleaved(fns, rounds, warmup=1)
    out = []
    for name, samples in s.items():
        st = Stat.of(samples)
        ratio = paired_ratio(samples, s[loop]) if name == batch else None
        out.append(ThroughputResult(name, images, st, images / (st.p50 / 1000.0), ratio))
    return out
