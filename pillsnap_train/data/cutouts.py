"""Pill cut-outs: each labelled pill of a photo segmented into a tight RGBA patch.

GrabCut initialised from the box, with an inscribed ellipse as the fallback when GrabCut
fails or gives an implausible mask (:func:`segment_pill`). Cut-outs are cached on disk by a
hash of the photo, the box and the settings, so a second dataset build costs one file read
per pill. The source-item helpers here (:func:`load_rgb`, :func:`split_item`, ...) are
shared with :mod:`.backgrounds`, which reads the same items.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BoxLike",
    "Cutout",
    "ImageInput",
    "SourceItem",
    "extract_cutouts",
    "segment_pill",
]

U8: TypeAlias = NDArray[np.uint8]
F32: TypeAlias = NDArray[np.float32]
#: An image file path, or an RGB ``uint8`` array of shape ``(H, W, 3)``.
ImageInput: TypeAlias = str | os.PathLike[str] | NDArray[np.uint8]
#: ``(x1, y1, x2, y2)`` in pixels of the (EXIF-upright) image.
BoxLike: TypeAlias = Sequence[float]
#: ``(image, boxes)`` or ``(image, boxes, class_ids)``; class ids default to ``-1`` (unknown).
SourceItem: TypeAlias = (
    tuple[ImageInput, Sequence[BoxLike]] | tuple[ImageInput, Sequence[BoxLike], Sequence[int]]
)

#: Bump when segmentation changes, so cached cut-outs from older code are not reused.
_CUTOUT_VERSION: Final = 1


@dataclass(frozen=True)
class Cutout:
    """One segmented pill: RGBA, cropped tight to its alpha (alpha is 0 or 255).

    ``method`` records whether GrabCut succeeded or the ellipse fallback was used, so a
    caller can audit segmentation quality.
    """

    rgba: U8
    class_id: int = -1
    source: str = ""
    method: Literal["grabcut", "ellipse"] = "grabcut"


def load_rgb(image: ImageInput) -> U8:
    if isinstance(image, np.ndarray):
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"image arrays must be HxWx3 uint8 RGB, got {arr.dtype} {arr.shape}")
        return np.ascontiguousarray(arr)
    bgr = cv2.imread(os.fspath(image), cv2.IMREAD_COLOR)  # applies EXIF orientation
    if bgr is None:
        raise ValueError(f"cannot decode image {os.fspath(image)!r}")
    rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
    return rgb


def source_hash(image: ImageInput) -> str:
    h = hashlib.sha1()
    if isinstance(image, np.ndarray):
        h.update(repr(image.shape).encode())
        h.update(np.ascontiguousarray(image).tobytes())
    else:
        h.update(Path(image).read_bytes())
    return h.hexdigest()


def _source_name(image: ImageInput) -> str:
    return "<array>" if isinstance(image, np.ndarray) else os.fspath(image)


def int_box(box: BoxLike, w: int, h: int) -> tuple[int, int, int, int] | None:
    """Clip a float xyxy box to the image and round outwards; None if nothing is left."""
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        return None
    x1 = max(0, math.floor(float(box[0])))
    y1 = max(0, math.floor(float(box[1])))
    x2 = min(w, math.ceil(float(box[2])))
    y2 = min(h, math.ceil(float(box[3])))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _ellipse_mask(bw: int, bh: int) -> U8:
    """Ellipse inscribed in a ``bw`` x ``bh`` box: most pills are round, oval or capsules."""
    mask = np.zeros((bh, bw), np.uint8)
    shift = 4  # sub-pixel precision: exact centre for even and odd sizes
    centre = (round((bw - 1) / 2 * 16), round((bh - 1) / 2 * 16))
    axes = (max(1, round(bw / 2 * 16)), max(1, round(bh / 2 * 16)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_8, shift)
    if not mask.any():
        mask[:] = 255
    return mask


def _largest_component_filled(fg: U8) -> U8:
    """Keep the largest blob and fill its holes (imprints and glare become holes in GrabCut)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros_like(fg)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = np.where(labels == best, 255, 0).astype(np.uint8)
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(blob)
    cv2.drawContours(filled, contours, -1, 255, thickness=-1)
    return filled


def segment_pill(
    image: U8,
    box: BoxLike,
    *,
    pad: float = 0.3,
    iterations: int = 4,
    min_grabcut_side: int = 10,
    min_fill: float = 0.3,
    max_fill: float = 0.97,
) -> tuple[U8, tuple[int, int, int, int], Literal["grabcut", "ellipse"]] | None:
    """Segment the pill inside ``box`` of an RGB image.

    Returns ``(mask, (x1, y1, x2, y2), method)``: a 0/255 mask the size of the clipped integer
    box. GrabCut is initialised from the box (outside = background) on a crop padded by
    ``pad`` times the box's long side, so it sees enough background to model it. The result
    is rejected, and an inscribed ellipse used instead, when GrabCut errors, the box is too
    small for its colour models, there is no background around the box, or the mask fills
    less than ``min_fill`` / more than ``max_fill`` of the box or spans less than half of it:
    a labelled box holds a pill, so such masks are segmentation failures. None when the box
    lies outside the image.
    """
    h, w = image.shape[:2]
    ib = int_box(box, w, h)
    if ib is None:
        return None
    x1, y1, x2, y2 = ib
    bw, bh = x2 - x1, y2 - y1
    p = max(4, round(pad * max(bw, bh)))
    cx1, cy1, cx2, cy2 = max(0, x1 - p), max(0, y1 - p), min(w, x2 + p), min(h, y2 + p)
    has_background = (cx2 - cx1) * (cy2 - cy1) > bw * bh
    if min(bw, bh) < min_grabcut_side or not has_background:
        return _ellipse_mask(bw, bh), ib, "ellipse"
    crop = cv2.cvtColor(np.ascontiguousarray(image[cy1:cy2, cx1:cx2]), cv2.COLOR_RGB2BGR)
    gc_mask = np.zeros(crop.shape[:2], np.uint8)
    rect = (x1 - cx1, y1 - cy1, bw, bh)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.setRNGSeed(12345)  # GrabCut's k-means init draws from OpenCV's global RNG
        cv2.grabCut(crop, gc_mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return _ellipse_mask(bw, bh), ib, "ellipse"
    fg = np.where((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    fg = fg[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1]
    k = np.ones((3, 3), np.uint8)
    fg = np.asarray(cv2.morphologyEx(fg, cv2.MORPH_OPEN, k), np.uint8)
    fg = _largest_component_filled(fg)
    fill = float(np.count_nonzero(fg)) / float(bw * bh)
    ys, xs = np.nonzero(fg)
    if (
        not min_fill <= fill <= max_fill
        or xs.size == 0
        or (xs.max() - xs.min() + 1) < 0.5 * bw
        or (ys.max() - ys.min() + 1) < 0.5 * bh
    ):
        return _ellipse_mask(bw, bh), ib, "ellipse"
    return fg, ib, "grabcut"


def _tight_rgba(rgb: U8, mask: U8) -> U8:
    ys, xs = np.nonzero(mask)
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgba = np.dstack([rgb[y1:y2, x1:x2], mask[y1:y2, x1:x2]])
    return np.ascontiguousarray(rgba.astype(np.uint8))


def split_item(item: SourceItem) -> tuple[ImageInput, Sequence[BoxLike], list[int]]:
    if len(item) == 3:
        image, boxes, ids = item
        if len(ids) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(ids)} class ids")
        return image, boxes, [int(c) for c in ids]
    image, boxes = item
    return image, boxes, [-1] * len(boxes)


def _read_cached_cutout(cache: Path, key: str) -> tuple[U8, Literal["grabcut", "ellipse"]] | None:
    methods: tuple[Literal["grabcut", "ellipse"], ...] = ("grabcut", "ellipse")
    for method in methods:
        path = cache / f"{key}_{method}.png"
        if path.is_file():
            bgra = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
            if bgra is not None and bgra.ndim == 3 and bgra.shape[2] == 4:
                rgba = np.asarray(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), np.uint8)
                return rgba, method
    return None


def extract_cutouts(
    items: Sequence[SourceItem],
    cache_dir: str | os.PathLike[str] | None,
    *,
    min_box_side: float = 4.0,
    pad: float = 0.3,
    iterations: int = 4,
) -> list[Cutout]:
    """Segment every labelled pill of ``items`` into an RGBA :class:`Cutout`.

    Each box gives one cut-out (GrabCut with ellipse fallback, see :func:`segment_pill`).
    Boxes with a side under ``min_box_side`` px after clipping, or outside the image, are
    skipped: they carry no usable pill appearance. Results are cached in ``cache_dir`` as
    PNG named by a hash of the source bytes, the box, and the segmentation settings, so a
    rerun (or a second dataset build) costs one file read per pill. ``None`` disables it.
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    out: list[Cutout] = []
    for item in items:
        image, boxes, ids = split_item(item)
        src_hash = source_hash(image) if cache is not None else ""
        rgb: U8 | None = None
        for box, cid in zip(boxes, ids, strict=True):
            if len(box) != 4:
                raise ValueError(f"boxes must be xyxy, got {box!r}")
            bw, bh = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
            if not (bw >= min_box_side and bh >= min_box_side):
                continue
            cached: Path | None = None
            if cache is not None:
                key = hashlib.sha1(
                    f"v{_CUTOUT_VERSION}|{src_hash}|{[round(float(v), 2) for v in box]}"
                    f"|{pad}|{iterations}".encode()
                ).hexdigest()[:24]
                hit = _read_cached_cutout(cache, key)
                if hit is not None:
                    rgba, method = hit
                    out.append(Cutout(rgba, cid, _source_name(image), method))
                    continue
                cached = cache / key
            if rgb is None:
                rgb = load_rgb(image)
            seg = segment_pill(rgb, box, pad=pad, iterations=iterations)
            if seg is None:
                continue
            mask, (x1, y1, x2, y2), how = seg
            if np.count_nonzero(mask) == 0:
                continue
            rgba = _tight_rgba(rgb[y1:y2, x1:x2], mask)
            if min(rgba.shape[:2]) < 2:
                continue
            out.append(Cutout(rgba, cid, _source_name(image), how))
            if cached is not None:
                tmp = cached.with_name(f"{cached.name}_{how}.{os.getpid()}.tmp.png")
                cv2.imwrite(os.fspath(tmp), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
                os.replace(tmp, cached.with_name(f"{cached.name}_{how}.png"))
    return out
