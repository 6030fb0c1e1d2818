"""The YOLO label-line format, written and parsed in one place.

A label file (``labels/<stem>.txt``) holds one line per box, ``class cx cy w h``: the box
centre and size divided by the image width and height, six decimals (Ultralytics reads the
upright, EXIF-corrected image, so boxes are in its pixels). Every writer in the project
(the detector dataset, the synthetic scenes, the test fixtures) goes through
:func:`format_line` and :func:`write_label_file`, and every reader through
:func:`parse_line`, so one convention holds everywhere.

Pixel convention: boxes are xyxy pixel *edges*, ``x2``/``y2`` exclusive, so a box over
pixel columns 10 to 19 is ``(10, 20)`` and is 10 px wide. Callers holding inclusive pixel
indices (the fixtures draw with PIL, whose rectangles include both end pixels) convert
with :func:`inclusive_to_edges` first. That conversion is the "+1 px" the fixtures used
to write by hand; it was a different input convention, not an off-by-one, and the lines
written are byte-identical to before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Container, Sequence
from typing import Final

__all__ = [
    "NORM_TOLERANCE",
    "clipped_lines",
    "format_line",
    "inclusive_to_edges",
    "parse_line",
    "write_label_file",
]

#: Normalised coordinates may overshoot [0, 1] by this much (rounding in exporters); more is
#: a broken label. Ultralytics itself rejects any coordinate above 1.
NORM_TOLERANCE: Final = 0.01


def format_line(cls: int, box: Sequence[float], width: float, height: float) -> str:
    """``class cx cy w h`` for an xyxy pixel-edge ``box`` in an image ``width`` x ``height``."""
    x1, y1, x2, y2 = box
    return (
        f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
        f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
    )


def inclusive_to_edges(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Inclusive pixel indices ``(x0, y0, x1, y1)`` -> pixel edges ``(x0, y0, x1 + 1, y1 + 1)``."""
    x0, y0, x1, y1 = box
    return x0, y0, x1 + 1, y1 + 1


def clipped_lines(
    boxes: Sequence[Sequence[float]], width: int, height: int, *, cls: int = 0
) -> list[str]:
    """Lines of class ``cls`` for pixel boxes clipped to the image; boxes left under 1 px
    wide or high are dropped (nothing to learn, and Ultralytics rejects empty boxes)."""
    lines = []
    for box in boxes:
        if len(box) != 4:
            raise ValueError(f"boxes must be xyxy, got {box!r}")
        x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
        x2, y2 = min(float(width), float(box[2])), min(float(height), float(box[3]))
        if x2 - x1 < 1.0 or y2 - y1 < 1.0:
            continue
        lines.append(format_line(cls, (x1, y1, x2, y2), width, height))
    return lines


def write_label_file(path: str | os.PathLike[str], lines: Sequence[str]) -> None:
    """One line per box, each ending in a newline; an empty file for an image without boxes
    (a background image, which Ultralytics trains on as such)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + ("\n" if lines else ""))


def parse_line(
    parts: Sequence[str], classes: Container[int] | None = None
) -> tuple[int, tuple[float, float, float, float]] | str:
    """``(class, normalised xyxy)`` for one split label line, or a skip reason.

    Reasons: ``malformed_label`` (too few or odd values, not numbers, a non-integer class),
    ``class_out_of_range`` (not in ``classes``; ``None`` accepts any), ``degenerate_box``
    (zero or negative size), ``box_out_of_bounds`` (beyond :data:`NORM_TOLERANCE`).
    Polygon lines (``class x1 y1 x2 y2 ...``, Roboflow segmentation exports) become their
    enclosing box, as Ultralytics does.
    """
    if len(parts) < 5 or (len(parts) > 5 and len(parts) % 2 == 0):
        return "malformed_label"
    try:
        cls_f = float(parts[0])
        values = [float(v) for v in parts[1:]]
    except ValueError:
        return "malformed_label"
    if not all(math.isfinite(v) for v in (cls_f, *values)) or cls_f != int(cls_f):
        return "malformed_label"
    cls = int(cls_f)
    if classes is not None and cls not in classes:
        return "class_out_of_range"
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            return "degenerate_box"
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    else:  # polygon: x1 y1 x2 y2 ... -> enclosing box
        xs, ys = values[0::2], values[1::2]
        box = (min(xs), min(ys), max(xs), max(ys))
    lo, hi = -NORM_TOLERANCE, 1 + NORM_TOLERANCE
    if not all(lo <= v <= hi for v in box):
        return "box_out_of_bounds"
    return cls, box
