"""Draw an :class:`IdentifyResult` on its photo: people read pictures faster than numbers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from .image import ImageInput, load_image
from .results import IdentifyResult

__all__ = ["annotate", "save_annotated"]

_OK = (40, 180, 60)
_UNKNOWN = (230, 140, 20)


def annotate(image: ImageInput, result: IdentifyResult) -> npt.NDArray[np.uint8]:
    """Return an RGB copy of ``image`` with each pill's box, name and confidence drawn."""
    rgb = load_image(image).copy()
    h, w = rgb.shape[:2]
    scale = max(0.4, min(w, h) / 900.0)
    thick = max(1, round(2 * scale))
    for n, pill in enumerate(result.pills, 1):
        best = pill.candidates[0] if pill.candidates else None
        text = (
            f"{n}. {pill.label.name} {pill.label.confidence:.0%}"
            if pill.label
            else (f"{n}. unknown ({best.name}? {best.confidence:.0%})" if best else f"{n}. unknown")
        )
        colour = _OK if pill.label else _UNKNOWN
        if pill.bbox is None:
            x1, y1, x2, y2 = 2, 2, w - 3, h - 3
        else:
            x1, y1, x2, y2 = (round(v) for v in pill.bbox.as_tuple())
        cv2.rectangle(rgb, (x1, y1), (x2, y2), colour, thick)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, thick)
        ty = y1 - 4 if y1 - th - base - 4 > 0 else min(h - 1, y2 + th + 4)
        cv2.rectangle(rgb, (x1, ty - th - base), (x1 + tw + 4, ty + base), colour, -1)
        cv2.putText(
            rgb,
            text,
            (x1 + 2, ty),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            (255, 255, 255),
            thick,
            cv2.LINE_AA,
        )
    return rgb


def save_annotated(image: ImageInput, result: IdentifyResult, out: str | Path) -> Path:
    path = Path(out)
    bgr = cv2.cvtColor(annotate(image, result), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"cannot write {path} (use a .png or .jpg name in an existing folder)")
    return path
