"""From calibrated probabilities to the typed answer for one pill (:class:`PillResult`).

The decision to name a drug is :func:`~.postprocess.is_identified`, the same function the
calibration used to choose the thresholds, so what was measured is what ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from .bundle.manifest import LabelEntry, Thresholds
from .postprocess import is_identified
from .results import BBox, Candidate, PillResult

__all__ = ["pill_result"]


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
