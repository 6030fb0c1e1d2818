"""Find the fastest bare onnxruntime configuration for a photo: the bench's floor.

Why search: the floor is what a careful user gets from onnxruntime alone, and "careful"
depends on the machine. On the 2-core reference box onnxruntime's defaults were slower
than 2 intra-op threads with the whole crop batch in one run, so a defaults-only floor
reported SDK / floor 0.85 while the SDK was 1.26-1.29 times the best bare configuration.

The search times every combination of intra-op threads (1, 2, ..., the CPU count, and
onnxruntime's default), spinning on/off and graph optimisation level, for each model
separately (a user configures each session), and for the classifier both the whole crop
batch in one run and chunks of :data:`~pillsnap_sdk.stages.CLASSIFIER_CHUNK`. Each
candidate is scored by its fastest run (the least disturbed by neighbours on a shared
box); the chosen configuration is then timed interleaved with the SDK like any floor.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ..bundle.loader import Bundle
from ..preprocessing import preprocess_batch
from ..stages import CLASSIFIER_CHUNK
from .floor import Floor, FloorConfig, OptLevel, SessionConfig

__all__ = ["Candidate", "FloorSearch", "candidates", "search_floor"]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One configuration's fastest run, per model (``chunk`` for the classifier)."""

    model: str
    config: SessionConfig
    chunk: int | None
    best_ms: float
    median_ms: float


@dataclass(frozen=True, slots=True)
class FloorSearch:
    """The chosen floor and every candidate timed for it."""

    best: FloorConfig
    candidates: list[Candidate]

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "model": c.model,
                "config": c.config.label,
                "chunk": c.chunk,
                "best_ms": round(c.best_ms, 2),
                "median_ms": round(c.median_ms, 2),
            }
            for c in self.candidates
        ]


def candidates(cpus: int | None = None) -> list[SessionConfig]:
    """The first round of the search on a machine with ``cpus`` CPUs: every intra-op
    thread count (onnxruntime's default, 1, 2, all CPUs) with spinning on and off, at
    the full graph optimisation level. :func:`search_floor` then tries the other levels
    on the winners only (they rarely matter on CPU; all of them would double the search).
    """
    n = cpus or os.cpu_count() or 1
    threads: list[int | None] = [None, *sorted({1, 2, n} & set(range(1, n + 1)))]
    return [
        SessionConfig(threads=t, spinning=s) for t, s in itertools.product(threads, (True, False))
    ]


def _other_levels(cfg: SessionConfig) -> list[SessionConfig]:
    levels: tuple[OptLevel, ...] = get_args(OptLevel)
    return [
        SessionConfig(cfg.threads, cfg.spinning, level)
        for level in levels
        if level != cfg.opt_level and level != "basic"  # basic drops the fusions
    ]


def _time(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    fn()  # warm-up: arena growth, first-run allocations
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return min(samples), float(np.median(samples))


def search_floor(
    bundle: Bundle,
    providers: Sequence[str],
    rgb: U8,
    crops: Sequence[U8],
    *,
    rounds: int = 3,
    configs: Sequence[SessionConfig] | None = None,
) -> FloorSearch:
    """Time every candidate on this photo's detector input and crops; keep the fastest.

    One configuration's sessions live at a time (memory stays that of one floor), so the
    candidates cannot be interleaved round by round; instead the first round of the search
    runs twice, the second time in reverse order, and each candidate keeps its fastest
    run of both passes, so a burst of load on a shared box does not decide the choice.
    """
    m = bundle.manifest
    batch, _ = preprocess_batch(list(crops), m.classifier.preprocessing)
    chunkings: list[int | None] = [None]
    if batch.shape[0] > CLASSIFIER_CHUNK:
        chunkings.append(CLASSIFIER_CHUNK)
    found: list[Candidate] = []

    def measure(cfgs: Sequence[SessionConfig], models: set[str]) -> None:
        for cfg in cfgs:
            floor = Floor(bundle, providers, config=FloorConfig(cfg, cfg))
            det_in = floor.detector_input(rgb) if "detector" in models else None
            if det_in is not None:
                best, med = _time(functools.partial(floor.run_detector, det_in), rounds)
                found.append(Candidate("detector", cfg, None, best, med))
            if "classifier" in models:
                for chunk in chunkings:
                    parts = floor.chunks(batch, chunk)
                    best, med = _time(functools.partial(floor.run_classifier, parts), rounds)
                    found.append(Candidate("classifier", cfg, chunk, best, med))
            del floor

    def best(model: str) -> Candidate | None:
        pool = [c for c in found if c.model == model]
        return min(pool, key=lambda c: c.best_ms) if pool else None

    first = list(configs or candidates())
    measure(first, {"detector", "classifier"})
    measure(first[::-1], {"detector", "classifier"})
    found[:] = _merged(found)
    if configs is None:
        det, cls = best("detector"), best("classifier")
        if det is not None:
            measure(_other_levels(det.config), {"detector"})
        if cls is not None:
            measure(_other_levels(cls.config), {"classifier"})
    det, cls = best("detector"), best("classifier")
    assert cls is not None
    det_cfg = det.config if det is not None else SessionConfig()
    return FloorSearch(FloorConfig(det_cfg, cls.config, cls.chunk), found)


def _merged(found: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per (model, config, chunk): its fastest run, the lower median."""
    out: dict[tuple[str, SessionConfig, int | None], Candidate] = {}
    for c in found:
        key = (c.model, c.config, c.chunk)
        old = out.get(key)
        if old is None:
            out[key] = c
        else:
            best, med = min(old.best_ms, c.best_ms), min(old.median_ms, c.median_ms)
            out[key] = Candidate(c.model, c.config, c.chunk, best, med)
    return list(out.values())


def provider_is_cpu(providers: Sequence[str]) -> bool:
    """The search is for the CPU provider; accelerators keep onnxruntime's defaults."""
    return all(p == "CPUExecutionProvider" for p in providers) and bool(
        "CPUExecutionProvider" in ort.get_available_providers()
    )
