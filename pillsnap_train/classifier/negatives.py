"""Pill-free crops of the training photos, for outlier exposure.

Why: the detector's false boxes (fingertips, palm creases, table edges, shadows) reach the
classifier, which was only ever shown pills, and it names some of them with full
confidence (two fingertips in ``examples/single_pill.jpg`` came back "tylenol-er 100 %"
once the detector's threshold was lowered). Trained toward the uniform distribution
(Hendrycks et al., "Deep Anomaly Detection with Outlier Exposure", 2019), such crops come
out with low confidence, so the abstention rule says "unknown" and a tentative box on
them is dropped.

Crops are drawn the size of the photo's own pills (x0.6-1.6), most of them near a pill
(where the detector's false boxes are) and the rest anywhere, and kept only when they show
almost none of any labelled pill. Torch-free and seeded: the same records give the same
crops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["NegativeSampling", "sample_negative_boxes"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class NegativeSampling:
    """How pill-free crops are drawn. The defaults are what the r23/r24 experiments used
    (docs/accuracy-2.0.md, "Outlier exposure"); they were not tuned."""

    #: Chance that a crop is centred near a pill (1-2.5 pill sizes from its centre).
    near_pill: float = 0.6
    #: Crop side relative to a pill of the same photo (log-uniform).
    size_range: tuple[float, float] = (0.6, 1.6)
    #: Largest part of any labelled pill a crop (with its classifier margin) may show.
    max_pill_fraction: float = 0.05
    #: Smallest part of a crop that must lie inside the photo.
    min_inside: float = 0.8
    #: Draws per accepted crop before a photo is given up on.
    tries: int = 25


def _inside_fraction(box: Box, width: int, height: int) -> float:
    x1, y1, x2, y2 = box
    iw = max(0.0, min(x2, width) - max(x1, 0.0))
    ih = max(0.0, min(y2, height) - max(y1, 0.0))
    return iw * ih / max((x2 - x1) * (y2 - y1), 1e-9)


def _pill_fraction(box: Box, pills: Sequence[Box], margin: float) -> float:
    """Largest share of one pill's area inside ``box`` grown by ``margin`` per side."""
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    x1, y1, x2, y2 = x1 - mx, y1 - my, x2 + mx, y2 + my
    worst = 0.0
    for px1, py1, px2, py2 in pills:
        iw = max(0.0, min(x2, px2) - max(x1, px1))
        ih = max(0.0, min(y2, py2) - max(y1, py1))
        worst = max(worst, iw * ih / max((px2 - px1) * (py2 - py1), 1e-9))
    return worst


def sample_negative_boxes(
    photos: Sequence[tuple[str, int, int, Sequence[Box]]],
    count: int,
    *,
    seed: int,
    margin: float,
    sampling: NegativeSampling | None = None,
) -> list[tuple[str, Box]]:
    """``count`` pill-free boxes over ``photos`` (path, width, height, labelled pill boxes).

    ``margin`` is the classifier's crop margin: the region it will actually see must be
    pill-free, not just the box. Photos are drawn in turn from a seeded shuffle, so every
    photo contributes before any contributes twice; a photo where no pill-free crop fits
    (a pile filling the frame) is skipped. May return fewer than ``count`` when too few
    photos have room.
    """
    s = sampling or NegativeSampling()
    usable = [p for p in photos if p[3]]
    if count <= 0 or not usable:
        return []
    rng = np.random.default_rng([seed, 3581])
    out: list[tuple[str, Box]] = []
    dead: set[int] = set()
    order: list[int] = []
    lo, hi = math.log(s.size_range[0]), math.log(s.size_range[1])
    while len(out) < count and len(dead) < len(usable):
        if not order:
            order = [int(i) for i in rng.permutation(len(usable)) if int(i) not in dead]
            continue
        k = order.pop()
        path, width, height, pills = usable[k]
        for _ in range(s.tries):
            px1, py1, px2, py2 = pills[int(rng.integers(len(pills)))]
            f = math.exp(rng.uniform(lo, hi))
            w, h = (px2 - px1) * f, (py2 - py1) * f
            if rng.random() < s.near_pill:
                angle = rng.uniform(0, 2 * math.pi)
                dist = rng.uniform(1.0, 2.5) * max(px2 - px1, py2 - py1)
                cx = (px1 + px2) / 2 + math.cos(angle) * dist
                cy = (py1 + py2) / 2 + math.sin(angle) * dist
            else:
                cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if _inside_fraction(box, width, height) < s.min_inside:
                continue
            if _pill_fraction(box, pills, margin) > s.max_pill_fraction:
                continue
            clipped = (
                max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]),
                min(float(height), box[3]),
            )  # fmt: skip
            out.append((path, clipped))
            break
        else:
            dead.add(k)
    return out
