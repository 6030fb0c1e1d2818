"""From calibrated probabilities to the typed answer for one pill (:class:`PillResult`).

The decision to name a drug is :func:`~.postprocess.is_identified`, the same function the
calibration used to choose the thresholds, so what was measured is what ships.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from .bundle.manifest import LabelEntry, Thresholds
from .errors import PillsnapError
from .postprocess import is_identified
from .results import BBox, BundleRef, Candidate, IdentifyResult, PillResult
from .router import Plan

__all__ = ["build_results", "pill_result"]


def pill_result(
    probs: npt.NDArray[np.float32],
    classes: Sequence[LabelEntry],
    thresholds: Thresholds,
    box: tuple[BBox, float] | None,
    top_k: int,
) -> PillResult:
    """The top-``k`` candidates of one probability row, its status and its box."""
    k = min(top_k, probs.shape[0])
    top = np.argsort(-probs, kind="stable")[:k]
    cands = []
    for idx in top:
        entry = classes[int(idx)]
        cands.append(
            Candidate(
                class_index=int(idx),
                code=entry.code,
                name=entry.name,
                confidence=float(min(max(probs[idx], 0.0), 1.0)),
                metadata=dict(entry.metadata),
            )
        )
    th = thresholds
    named = bool(is_identified(probs[None], th.unknown_threshold, th.unknown_margin)[0])
    status: Literal["identified", "unknown"] = "identified" if named else "unknown"
    bbox, det_conf = box if box is not None else (None, None)
    return PillResult(bbox=bbox, detection_confidence=det_conf, status=status, candidates=cands)


def build_results(
    plans: Sequence[Plan | PillsnapError],
    probs: npt.NDArray[np.float32],
    classify_ms: tuple[float, float],
    classes: Sequence[LabelEntry],
    thresholds: Thresholds,
    bundle: BundleRef,
    top_k: int,
) -> list[IdentifyResult | PillsnapError]:
    """Each plan's :class:`IdentifyResult` from the rows of ``probs`` its crops got, in
    order (errors stay in their place). ``classify_ms`` (preprocess, run) was shared by
    the plans, so each photo's timings get an equal share."""
    results: list[IdentifyResult | PillsnapError] = []
    offset = 0
    share = 1.0 / max(sum(isinstance(p, Plan) for p in plans), 1)
    for plan in plans:
        if not isinstance(plan, Plan):
            results.append(plan)
            continue
        t1 = time.perf_counter()
        n = len(plan.crops)
        pills = [
            pill_result(
                probs[offset + i],
                classes,
                thresholds,
                plan.boxes[i] if plan.boxes else None,
                top_k,
            )
            for i in range(n)
        ]
        if any(plan.tentative):  # a second-tier box stays only when it names a drug
            pills = [
                p
                for p, tent in zip(pills, plan.tentative, strict=True)
                if not tent or p.status == "identified"
            ]
        offset += n
        timings = dict(plan.timings)
        timings["classify_preprocess"] = classify_ms[0] * share
        timings["classify"] = classify_ms[1] * share
        timings["postprocess"] = (time.perf_counter() - t1) * 1000.0
        timings["total"] = (time.perf_counter() - plan.start) * 1000.0
        results.append(
            IdentifyResult(
                mode_used=plan.mode_used,
                pills=pills,
                image_size=plan.size,
                bundle=bundle,
                timings_ms=timings,
                warnings=plan.warnings,
            )
        )
    return results
