"""A 12 MP phone photo against the same scene at 0.3 MP: time, decode, and same answers.

Why: kiosk and phone cameras deliver 2-12 MP JPEGs, so that is the latency users see;
the SDK decodes big JPEGs in the DCT domain (:mod:`pillsnap_sdk.photo`) and the goal is
12 MP end to end <= :data:`GOAL_BIG_VS_SMALL` x the 0.3 MP time, with the same pills and
names. The 12 MP photo is the multi-pill photo enlarged
(:func:`~.scenes.upscaled_photo`), so both runs see the same scene; they are timed
interleaved, and the pills are matched by box to count the names that stayed the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..boxes import box_iou
from ..pipeline import Identifier
from ..results import IdentifyResult
from .scenes import Scene, upscaled_photo
from .timing import Stat, measure_interleaved, paired_ratio

__all__ = ["GOAL_BIG_VS_SMALL", "BigPhotoResult", "measure_big_photo", "same_answers"]

#: Issue goal (reported, not gated): 12 MP end to end / 0.3 MP end to end, same scene.
GOAL_BIG_VS_SMALL = 1.3


@dataclass
class BigPhotoResult:
    """The same scene at its own size and enlarged to 12 MP, timed interleaved."""

    scene: str
    small_size: tuple[int, int]
    big_size: tuple[int, int]
    small: Stat
    big: Stat
    small_decode: Stat
    big_decode: Stat
    big_vs_small: float
    pills_small: int
    pills_big: int
    matched: int
    same_names: int


def _name(p: object) -> str:
    label = getattr(p, "label", None)
    return str(label.code) if label is not None else "unknown"


def same_answers(a: IdentifyResult, b: IdentifyResult) -> tuple[int, int]:
    """Pills of ``a`` and ``b`` matched by box (IoU >= 0.5, in relative coordinates):
    ``(matched, of those with the same name or both unknown)``."""

    def rel(r: IdentifyResult) -> npt.NDArray[np.float32]:
        w, h = r.image_size
        boxes = [p.bbox.as_tuple() for p in r.pills if p.bbox is not None]
        arr: npt.NDArray[np.float32] = np.asarray(boxes, np.float32).reshape(-1, 4)
        arr /= np.asarray([w, h, w, h], np.float32)
        return arr

    pa = [p for p in a.pills if p.bbox is not None]
    pb = [p for p in b.pills if p.bbox is not None]
    if not pa or not pb:
        return 0, 0
    iou = box_iou(rel(a), rel(b))
    matched = same = 0
    used: set[int] = set()
    for i in np.argsort(-iou.max(axis=1), kind="stable"):
        order = [int(j) for j in np.argsort(-iou[i], kind="stable") if int(j) not in used]
        if not order or iou[i, order[0]] < 0.5:
            continue
        used.add(order[0])
        matched += 1
        same += _name(pa[int(i)]) == _name(pb[order[0]])
    return matched, same


def measure_big_photo(idf: Identifier, scene: Scene, rounds: int) -> BigPhotoResult:
    """``identify`` of the scene's photo and of its 12 MP enlargement, interleaved."""
    big = upscaled_photo(scene.data)
    first_small, first_big = idf.identify(scene.data), idf.identify(big)
    decode: dict[str, list[float]] = {"small": [], "big": []}

    def run(key: str, data: bytes) -> Callable[[], object]:
        def once() -> None:
            decode[key].append(idf.identify(data).timings_ms["decode"])

        return once

    s = measure_interleaved({"small": run("small", scene.data), "big": run("big", big)}, rounds)
    matched, same = same_answers(first_small, first_big)
    return BigPhotoResult(
        scene=scene.name,
        small_size=first_small.image_size,
        big_size=first_big.image_size,
        small=Stat.of(s["small"]),
        big=Stat.of(s["big"]),
        small_decode=Stat.of(decode["small"][-rounds:]),
        big_decode=Stat.of(decode["big"][-rounds:]),
        big_vs_small=paired_ratio(s["big"], s["small"]),
        pills_small=len(first_small.pills),
        pills_big=len(first_big.pills),
        matched=matched,
        same_names=same,
    )
