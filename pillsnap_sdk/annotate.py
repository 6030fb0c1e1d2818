"""Draw an :class:`IdentifyResult` on its photo: people read pictures faster than numbers.

Only a result of *this* photo is drawn (its ``image_size`` must match): boxes drawn on
another photo look plausible and are wrong, the worst kind of picture to hand a person.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from .errors import InvalidArgumentError, PillsnapError
from .image import ImageInput, load_image
from .results import IdentifyResult

__all__ = ["SUFFIXES", "annotate", "save_annotated"]

#: Picture formats :func:`save_annotated` writes (OpenCV picks the encoder by extension).
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

_OK = (40, 180, 60)
_UNKNOWN = (230, 140, 20)


def annotate(image: ImageInput, result: IdentifyResult) -> npt.NDArray[np.uint8]:
    """Return an RGB copy of ``image`` with each pill's box, name and confidence drawn.

    Raises :class:`InvalidArgumentError` when ``result`` is not an :class:`IdentifyResult`
    of a photo of this size or holds a non-finite box.
    """
    if not isinstance(result, IdentifyResult):
        raise InvalidArgumentError(f"result must be an IdentifyResult, got {type(result).__name__}")
    rgb = load_image(image).copy()
    h, w = rgb.shape[:2]
    if tuple(result.image_size) != (w, h):
        raise InvalidArgumentError(
            f"result is of a {result.image_size[0]}x{result.image_size[1]} photo, the image "
            f"is {w}x{h}: draw a result on the photo it was computed from"
        )
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
            box = pill.bbox.as_tuple()
            if not all(math.isfinite(v) for v in box):
                raise InvalidArgumentError(f"pill {n} has a non-finite box {box}")
            # Clamped: a box a little outside the photo is drawn at its edge, and a huge
            # coordinate never reaches OpenCV's int conversion.
            x1, x2 = (min(max(round(v), -1), w) for v in (box[0], box[2]))
            y1, y2 = (min(max(round(v), -1), h) for v in (box[1], box[3]))
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
    """Write :func:`annotate`'s picture to ``out`` (a :data:`SUFFIXES` name in an existing
    folder); every refusal is an :class:`InvalidArgumentError` or :class:`PillsnapError`,
    checked before anything is drawn."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise InvalidArgumentError(f"out must be a file name, got {out!r:.80}")
    path = Path(os.fspath(out))
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidArgumentError(
            f"out {str(path)[:200]}: unknown picture extension {path.suffix!r:.20}; use one "
            f"of {', '.join(SUFFIXES)}"
        )
    if path.is_dir() or not path.parent.is_dir():
        raise InvalidArgumentError(f"out {str(path)[:200]}: give a file name in an existing folder")
    bgr = cv2.cvtColor(annotate(image, result), cv2.COLOR_RGB2BGR)
    try:
        ok = cv2.imwrite(str(path), bgr)
    except cv2.error as exc:
        raise PillsnapError(f"cannot write {str(path)[:200]}: {exc}") from exc
    if not ok:
        raise PillsnapError(f"cannot write {str(path)[:200]} (permissions? disk full?)")
    return path
