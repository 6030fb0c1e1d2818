"""The router: one decoded photo -> a :class:`Plan` (the crops to classify and their boxes).

``mode="auto"``: run the detector; >= 2 pills -> "combo" (every crop), exactly 1 ->
"single" on that crop, none -> classify the whole photo and warn ``no_pill_detected``.
``"single"`` (or a bundle without a detector) classifies the whole photo. Kept apart from
:mod:`.pipeline` so the routing rule reads in one place and is tested without sessions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from .photo import Photo, take_crops, to_full
from .results import BBox
from .stages import Detections

__all__ = ["Plan", "route"]

U8 = npt.NDArray[np.uint8]


class Plan:
    """Per-photo work between decoding/detection and the shared classifier run."""

    __slots__ = ("boxes", "crops", "mode_used", "size", "start", "timings", "warnings")

    def __init__(self, start: float, size: tuple[int, int], timings: dict[str, float]) -> None:
        self.start = start
        self.size = size
        self.timings = timings
        self.crops: list[U8] = []
        self.boxes: list[tuple[BBox, float]] = []
        self.mode_used: Literal["single", "combo"] = "single"
        self.warnings: list[str] = []


def route(
    photo: Photo,
    *,
    mode: str,
    detect: Callable[[U8, dict[str, float]], Detections] | None,
    crop_margin: float,
    start: float,
    timings: dict[str, float],
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
    timings["crop"] = (time.perf_counter() - t) * 1000.0 - timings.pop("_redecode", 0.0)
    return plan
