"""The router: one decoded photo -> a :class:`Plan` (the crops to classify and their boxes).

``mode="auto"``: run the detector; >= 2 pills -> "combo" (every crop), exactly 1 ->
"single" on that crop, none -> classify the whole photo and warn ``no_pill_detected``.
``"single"`` (or a bundle without a detector) classifies the whole photo. With a second
detector tier (``confident_at``), boxes scored under it are *tentative*: looked at only when
the photo has a confident box, dropped when they lie on a confident box's pill, and kept in
the answer only when the classifier names them (:mod:`.answers`). Kept apart from
:mod:`.pipeline` so the routing rule reads in one place and is tested without sessions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from .boxes import box_overlap_of_smaller
from .photo import Photo, take_crops, to_full
from .results import BBox
from .stages import Detections

__all__ = ["GROUP_BYTES", "Plan", "route", "tier_boxes"]

#: Most decoded-photo bytes one ``identify_batch`` group keeps alive while its crops wait
#: for a shared classifier run. Crops are views into their photo and a one-pill photo's
#: crop is the whole photo: 16 12-MP photos in single mode held 1.1 GB (a loop of
#: ``identify``: 0.3 GB); big photos now go one group each, small ones still share runs.
GROUP_BYTES = 64 * 1024 * 1024

#: A tentative box sharing more than this share of the smaller box's area with a confident
#: box is the same pill (a part of it, or it plus its neighbour), not another pill.
SAME_PILL_OVERLAP = 0.5

U8 = npt.NDArray[np.uint8]


class Plan:
    """Per-photo work between decoding/detection and the shared classifier run."""

    __slots__ = (
        "boxes",
        "crops",
        "mode_used",
        "size",
        "start",
        "tentative",
        "timings",
        "warnings",
    )

    def __init__(self, start: float, size: tuple[int, int], timings: dict[str, float]) -> None:
        self.start = start
        self.size = size
        self.timings = timings
        self.crops: list[U8] = []
        self.boxes: list[tuple[BBox, float]] = []
        #: Per box: True for a second-tier box, kept only if the classifier names it.
        self.tentative: list[bool] = []
        self.mode_used: Literal["single", "combo"] = "single"
        self.warnings: list[str] = []

    def held_bytes(self) -> int:
        """Bytes of the distinct arrays the crops keep alive (their bases, not the views)."""
        roots: dict[int, int] = {}
        for c in self.crops:
            root: object = c
            while isinstance(root, np.ndarray) and isinstance(root.base, np.ndarray):
                root = root.base
            if isinstance(root, np.ndarray):
                roots[id(root)] = root.nbytes
        return sum(roots.values())


def route(
    photo: Photo,
    *,
    mode: str,
    detect: Callable[[U8, dict[str, float]], Detections] | None,
    crop_margin: float,
    start: float,
    timings: dict[str, float],
    confident_at: float | None = None,
) -> Plan:
    """Decide how ``photo`` is classified. ``detect`` is ``None`` when the bundle has no
    detector; it runs on ``photo.rgb`` and fills ``timings`` with its own stages. Crops are
    cut from full-size boxes as finely as the classifier needs (:func:`~.photo.take_crops`;
    a finer decode it needs is added to ``decode``)."""
    rgb = photo.rgb
    plan = Plan(start=start, size=photo.size, timings=timings)
    if mode == "single" or detect is None:
        plan.crops.append(rgb)
        return plan
    det = detect(rgb, timings)
    t = time.perf_counter()
    det, tentative = tier_boxes(det, confident_at)
    if len(det.scores) == 0:
        if mode == "combo":
            plan.mode_used = "combo"
        else:
            plan.crops.append(rgb)
        plan.warnings.append("no_pill_detected")
    else:
        plan.mode_used = "combo" if (mode == "combo" or len(det.scores) >= 2) else "single"
        boxes = [tuple(float(v) for v in box) for box in to_full(det.boxes, photo)]
        plan.crops += take_crops(photo, boxes, crop_margin, timings)
        for (x1, y1, x2, y2), score in zip(boxes, det.scores, strict=True):
            plan.boxes.append((BBox(x1=x1, y1=y1, x2=x2, y2=y2), float(score)))
        plan.tentative = [bool(v) for v in tentative]
    timings["crop"] = (time.perf_counter() - t) * 1000.0 - timings.pop("_redecode", 0.0)
    return plan


def tier_boxes(
    det: Detections, confident_at: float | None
) -> tuple[Detections, npt.NDArray[np.bool_]]:
    """Split ``det`` (best first) at ``confident_at``: the boxes to classify and which of
    them are tentative. None: every box is confident. No confident box: no boxes (the
    photo takes the no-detection route, as with one tier). A tentative box overlapping a
    confident one by more than :data:`SAME_PILL_OVERLAP` of the smaller area is dropped."""
    n = len(det.scores)
    if confident_at is None or n == 0:
        return det, np.zeros(n, bool)
    sure = det.scores >= confident_at
    if not sure.any():
        return Detections(det.boxes[:0], det.scores[:0]), np.zeros(0, bool)
    overlap = box_overlap_of_smaller(det.boxes[~sure], det.boxes[sure])
    keep = sure.copy()
    keep[np.flatnonzero(~sure)[overlap.max(axis=1) <= SAME_PILL_OVERLAP]] = True
    return Detections(det.boxes[keep], det.scores[keep]), ~sure[keep]
