"""Multi-pill scene synthesis: cut pills out of single-pill photos and paste them on new tables.

Why: the detector trained on the real photos (one pill on a palm, a few busy tables) scores
AP@0.5 0.93 on photos of the same set-up but 0.29 on another camera on a plain light table.
It has learnt the set-up, not the pill. Synthetic scenes break that shortcut: the same pills
(GrabCut cut-outs from their real photos) appear in many numbers, sizes and orientations on
procedurally varied backgrounds (plain light/dark tables, gradients, paper, wood, cloth,
speckled stone), under varied lighting, blur, noise and JPEG artefacts. Boxes are exact (the
tight box of each pasted alpha mask), so the scenes carry no label noise of their own.

Deliberately torch-free (numpy, OpenCV, pydantic): it runs in data-prep processes and tests
without importing the training stack. Everything random is drawn from a caller-supplied
:class:`numpy.random.Generator`, so a seed fixes a scene bit for bit.

Public API: :class:`SynthConfig`, :class:`Cutout`, :class:`Scene`, :func:`extract_cutouts`,
:func:`extract_backgrounds`, :func:`synthesize_scene`, :func:`write_synthetic_yolo`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .yolo_format import format_line, write_label_file

__all__ = [
    "BACKGROUND_KINDS",
    "BoxLike",
    "Cutout",
    "ImageInput",
    "Scene",
    "SourceItem",
    "SynthConfig",
    "extract_backgrounds",
    "extract_cutouts",
    "jpeg_roundtrip",
    "photometric_jitter",
    "pile_config",
    "segment_pill",
    "synthesize_scene",
    "write_synthetic_yolo",
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
_BG_VERSION: Final = 3

#: Procedural background kinds :func:`synthesize_scene` can draw.
BACKGROUND_KINDS: Final = (
    "plain_light",
    "plain_dark",
    "gradient",
    "paper",
    "wood",
    "cloth",
    "stone",
)


# --------------------------------------------------------------------------- config / records


class SynthConfig(BaseModel):
    """Knobs for :func:`synthesize_scene`; defaults aim at phone photos of pills on a table.

    Sizes are relative to the canvas so one config works at any resolution. ``pill_size``
    spans the range seen in the real photos: ~0.05 of the short side for a 20-pill table,
    ~0.3 for a close-up of one pill.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(480, ge=16, description="canvas width (px)")
    height: int = Field(640, ge=16, description="canvas height (px)")
    swap_orientation_prob: float = Field(
        0.5, ge=0, le=1, description="chance to swap width/height (portrait vs landscape)"
    )
    n_pills: tuple[int, int] = Field((2, 25), description="inclusive range of pills per scene")
    pill_size: tuple[float, float] = Field(
        (0.04, 0.30), description="pill long side / canvas short side, scene-level range"
    )
    size_jitter: float = Field(0.2, ge=0, le=1, description="per-pill log-size jitter")
    max_fill: float = Field(
        0.35, gt=0, le=1, description="cap on total pill-box area / canvas area (sets max size)"
    )
    min_pill_px: int = Field(6, ge=2, description="smallest pill long side (px)")
    max_upscale: float = Field(
        2.5, ge=1, description="max enlargement of a cut-out (more looks blurry, not like a pill)"
    )
    max_overlap: float = Field(
        0.08, ge=0, le=1, description="max intersection / smaller box area between two pills"
    )
    truncate_prob: float = Field(
        0.05, ge=0, le=1, description="chance a pill may lie partly outside the frame"
    )
    min_visible: float = Field(
        0.55, gt=0, le=1, description="min in-frame fraction of a truncated pill's mask"
    )
    alpha_threshold: int = Field(
        128, ge=1, le=255, description="alpha level that counts as pill for masks and boxes"
    )
    edge_feather: float = Field(0.7, ge=0, description="sigma (px) of the alpha edge blur")
    drop_shadow_prob: float = Field(0.7, ge=0, le=1, description="scene uses drop shadows")
    real_background_prob: float = Field(
        0.3, ge=0, le=1, description="chance of a real photo background (if any are given)"
    )
    background_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "plain_light": 3.0,
            "plain_dark": 1.0,
            "gradient": 1.0,
            "paper": 2.0,
            "wood": 1.0,
            "cloth": 1.0,
            "stone": 2.0,
        },
        description="relative odds of each procedural background kind",
    )
    lighting_prob: float = Field(0.8, ge=0, le=1, description="vignette / light gradient")
    cast_shadow_prob: float = Field(0.25, ge=0, le=1, description="large soft shadow (hand)")
    photometric: bool = Field(True, description="apply the whole-scene photometric aug")
    brightness: float = Field(0.2, ge=0, le=1)
    contrast: float = Field(0.25, ge=0, le=1)
    saturation: float = Field(0.3, ge=0, le=1)
    temperature: float = Field(0.25, ge=0, le=0.5, description="R/B gain shift (white balance)")
    gamma: tuple[float, float] = Field((0.75, 1.35))
    blur_prob: float = Field(0.3, ge=0, le=1)
    blur_sigma: float = Field(1.4, ge=0)
    motion_blur_prob: float = Field(0.15, ge=0, le=1)
    motion_blur_max: int = Field(9, ge=1, description="max motion-blur kernel length (px)")
    noise_prob: float = Field(0.5, ge=0, le=1)
    noise_sigma: float = Field(12.0, ge=0, description="max gaussian noise sigma (0-255 units)")
    jpeg_prob: float = Field(0.7, ge=0, le=1)
    jpeg_quality: tuple[int, int] = Field((20, 95))
    same_pill_prob: float = Field(
        0.0, ge=0, le=1, description="chance a scene uses only 1-2 cut-outs (a pile of one drug)"
    )
    cluster_prob: float = Field(
        0.0, ge=0, le=1, description="chance pills gather round one spot (touching, a pile)"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> SynthConfig:
        lo, hi = self.n_pills
        if not 1 <= lo <= hi:
            raise ValueError(f"n_pills must satisfy 1 <= lo <= hi, got {self.n_pills}")
        if not 0 < self.pill_size[0] <= self.pill_size[1] <= 1:
            raise ValueError(f"pill_size must satisfy 0 < lo <= hi <= 1, got {self.pill_size}")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"bad gamma range {self.gamma}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"bad jpeg_quality range {self.jpeg_quality}")
        unknown = set(self.background_weights) - set(BACKGROUND_KINDS)
        if unknown:
            raise ValueError(f"unknown background kinds {sorted(unknown)}")
        if sum(max(0.0, w) for w in self.background_weights.values()) <= 0:
            raise ValueError("background_weights must have a positive weight")
        return self


def pile_config(base: SynthConfig | None = None) -> SynthConfig:
    """Scenes of dense piles: 25-40 small, touching, overlapping pills, mostly one drug, on
    dark stone, cloth or a plain tray (the counting-tray photos 1.1.0 could not count)."""
    return (base or SynthConfig()).model_copy(
        update={
            "n_pills": (25, 40),
            "pill_size": (0.05, 0.12),
            "max_fill": 0.6,
            "max_overlap": 0.45,
            "truncate_prob": 0.02,
            "same_pill_prob": 0.7,
            "cluster_prob": 0.8,
            "real_background_prob": 0.15,
            "background_weights": {
                "plain_light": 1.0,
                "plain_dark": 2.0,
                "gradient": 0.5,
                "paper": 0.5,
                "wood": 1.0,
                "cloth": 2.0,
                "stone": 3.0,
            },
        }
    )


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


@dataclass(frozen=True)
class Scene:
    """A synthetic photo and its exact labels.

    ``boxes`` are float32 ``(N, 4)`` xyxy pixel edges (``x2``/``y2`` exclusive): the tight
    box of ``masks[i]``, each mask being the in-frame pixels where the pasted pill's alpha is
    at least ``alpha_threshold`` (before later pills partly cover it: boxes are amodal, as
    human labels are). ``class_ids`` are the cut-outs' source classes (``-1`` = unknown).
    """

    image: U8
    boxes: F32
    class_ids: NDArray[np.int64]
    masks: list[NDArray[np.bool_]]
    background: str


# --------------------------------------------------------------------------- cut-outs


def _load_rgb(image: ImageInput) -> U8:
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


def _source_hash(image: ImageInput) -> str:
    h = hashlib.sha1()
    if isinstance(image, np.ndarray):
        h.update(repr(image.shape).encode())
        h.update(np.ascontiguousarray(image).tobytes())
    else:
        h.update(Path(image).read_bytes())
    return h.hexdigest()


def _source_name(image: ImageInput) -> str:
    return "<array>" if isinstance(image, np.ndarray) else os.fspath(image)


def _int_box(box: BoxLike, w: int, h: int) -> tuple[int, int, int, int] | None:
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
    ib = _int_box(box, w, h)
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


def _items(item: SourceItem) -> tuple[ImageInput, Sequence[BoxLike], list[int]]:
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
        image, boxes, ids = _items(item)
        src_hash = _source_hash(image) if cache is not None else ""
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
                rgb = _load_rgb(image)
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


def _fill_boxes(bgr: U8, mask: U8, rects: Sequence[tuple[int, int, int, int]]) -> U8:
    """Cover each pill rectangle with a nearby clean patch of the same photo, feathered in.

    Copying real texture (granite, skin, fabric) reads as background; diffusion inpainting
    leaves a flat smear that reads as an object. Candidate sources are the rectangle's
    neighbours left/right/above/below at growing distances, the first that is fully inside
    the image and touches no pill wins; Telea inpainting covers any rectangle without one.
    """
    out = bgr.astype(np.float32)
    h, w = mask.shape
    leftover = np.zeros_like(mask)
    for x1, y1, x2, y2 in rects:
        rw, rh = x2 - x1, y2 - y1
        feather = max(1.0, 0.08 * min(rw, rh))
        pad = int(2 * feather) + 1
        src: tuple[int, int] | None = None
        for dist in (1.0, 1.5, 2.0, 3.0):
            for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)):
                sx = x1 + int(dx * dist * (rw + pad))
                sy = y1 + int(dy * dist * (rh + pad))
                if sx - pad < 0 or sy - pad < 0 or sx + rw + pad > w or sy + rh + pad > h:
                    continue
                if mask[sy - pad : sy + rh + pad, sx - pad : sx + rw + pad].any():
                    continue
                src = (sx, sy)
                break
            if src is not None:
                break
        if src is None:
            leftover[y1:y2, x1:x2] = 255
            continue
        sx, sy = src
        # Feathered rectangle: 1 inside the box, fading out over `pad` px around it.
        ax1, ay1 = max(0, x1 - pad), max(0, y1 - pad)
        ax2, ay2 = min(w, x2 + pad), min(h, y2 + pad)
        weight = np.zeros((ay2 - ay1, ax2 - ax1), np.float32)
        weight[y1 - ay1 : y2 - ay1, x1 - ax1 : x2 - ax1] = 1.0
        weight = np.asarray(cv2.GaussianBlur(weight, (0, 0), feather), np.float32)
        weight[y1 - ay1 : y2 - ay1, x1 - ax1 : x2 - ax1] = 1.0
        patch = out[ay1 - y1 + sy : ay2 - y1 + sy, ax1 - x1 + sx : ax2 - x1 + sx]
        region = out[ay1:ay2, ax1:ax2]
        out[ay1:ay2, ax1:ax2] = region * (1 - weight[..., None]) + patch * weight[..., None]
    result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if leftover.any():
        result = np.asarray(cv2.inpaint(result, leftover, 5, cv2.INPAINT_TELEA), np.uint8)
    return np.asarray(result, np.uint8)


def extract_backgrounds(
    items: Sequence[SourceItem],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    max_boxes: int = 3,
    grow: float = 0.25,
) -> list[U8]:
    """Real photo backgrounds, as RGBA: pills covered by nearby texture, alpha 0 there.

    Why: palms, laptop lids and countertops from the real photos are backgrounds the
    procedural generator cannot imitate, and they carry the camera's own look. Scenes crop
    them *avoiding* the alpha-0 (painted) areas where they can (inpainting leaves smears), so
    the inpainting only fills what a crop cannot avoid. Photos with more than ``max_boxes``
    pills are skipped. Each box is grown by ``grow`` of its size to cover shadows and label
    slack. Cached as PNG like :func:`extract_cutouts`.
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    out: list[U8] = []
    for item in items:
        image, boxes, _ = _items(item)
        if len(boxes) > max_boxes:
            continue
        path: Path | None = None
        if cache is not None:
            key = hashlib.sha1(
                f"bg{_BG_VERSION}|{_source_hash(image)}|{[list(map(float, b)) for b in boxes]}"
                f"|{grow}".encode()
            ).hexdigest()[:24]
            path = cache / f"{key}_bg.png"
            if path.is_file():
                bgra = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
                if bgra is not None and bgra.ndim == 3 and bgra.shape[2] == 4:
                    out.append(np.asarray(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), np.uint8))
                    continue
        rgb = _load_rgb(image)
        h, w = rgb.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        rects: list[tuple[int, int, int, int]] = []
        for b in boxes:
            if len(b) != 4:
                raise ValueError(f"boxes must be xyxy, got {b!r}")
            gx = grow * (float(b[2]) - float(b[0]))
            gy = grow * (float(b[3]) - float(b[1]))
            ib = _int_box((b[0] - gx, b[1] - gy, b[2] + gx, b[3] + gy), w, h)
            if ib is not None:
                mask[ib[1] : ib[3], ib[0] : ib[2]] = 255
                rects.append(ib)
        if mask.mean() > 0.5 * 255:
            continue  # mostly pill: nothing left to use as a background
        bgr = _fill_boxes(np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.uint8), mask, rects)
        bgra = np.dstack([bgr, 255 - mask]).astype(np.uint8)
        if path is not None:
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.png")
            cv2.imwrite(os.fspath(tmp), bgra)
            os.replace(tmp, path)
        out.append(np.asarray(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), np.uint8))
    return out


# --------------------------------------------------------------------------- backgrounds


def _noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> F32:
    """Smooth value noise in about [-1, 1]: low-res gaussian noise upsampled, summed octaves."""
    acc = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, math.ceil(h / cell) + 1), max(2, math.ceil(w / cell) + 1)
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        acc += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cell = max(1.0, cell / 2)
    result: F32 = (acc / total).astype(np.float32)
    return result


def _tint(rng: np.random.Generator, base: float, spread: float) -> F32:
    return np.clip(base + rng.uniform(-spread, spread, 3), 0.0, 1.0).astype(np.float32)


def _hsv_colour(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> F32:
    hsv = np.array(
        [[[rng.uniform(*h) % 180.0, rng.uniform(*s) * 255.0, rng.uniform(*v) * 255.0]]],
        np.float32,
    ).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0
    return np.asarray(rgb, np.float32)


def _coords(rng: np.random.Generator, h: int, w: int) -> tuple[F32, F32]:
    """Pixel grid rotated by a random angle: patterns (grain, lines, weave) at any angle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, math.pi)
    c, s = math.cos(a), math.sin(a)
    u = (xx * c + yy * s).astype(np.float32)
    v = (-xx * s + yy * c).astype(np.float32)
    return u, v


def _bg_plain(rng: np.random.Generator, h: int, w: int, dark: bool) -> F32:
    base = _tint(rng, rng.uniform(0.05, 0.35) if dark else rng.uniform(0.72, 0.97), 0.04)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    img = img + rng.uniform(0.005, 0.03) * _noise(rng, h, w, rng.uniform(20, 120))[..., None]
    return img + rng.uniform(0.0, 0.02) * rng.standard_normal((h, w, 1), dtype=np.float32)


def _bg_gradient(rng: np.random.Generator, h: int, w: int) -> F32:
    c1 = _hsv_colour(rng, (0, 180), (0.0, 0.35), (0.3, 1.0))
    c2 = _hsv_colour(rng, (0, 180), (0.0, 0.35), (0.3, 1.0))
    u, _ = _coords(rng, h, w)
    t = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    return np.asarray(img + 0.01 * _noise(rng, h, w, 40)[..., None], np.float32)


def _bg_paper(rng: np.random.Generator, h: int, w: int) -> F32:
    base = _tint(rng, rng.uniform(0.82, 0.98), 0.03)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    img += 0.015 * _noise(rng, h, w, 4, octaves=2)[..., None]
    if rng.random() < 0.6:  # ruled notebook paper, as in several real photos
        _, v = _coords(rng, h, w)
        spacing = rng.uniform(18, 40) * min(h, w) / 480
        phase = np.mod(v, spacing)
        line = (phase < rng.uniform(1.0, 2.0)).astype(np.float32)
        line = np.asarray(cv2.GaussianBlur(line, (0, 0), 0.6), np.float32)
        colour = _hsv_colour(rng, (95, 125), (0.2, 0.6), (0.5, 0.9))
        img = img * (1 - 0.6 * line[..., None]) + colour * 0.6 * line[..., None]
    return img


def _bg_wood(rng: np.random.Generator, h: int, w: int) -> F32:
    dark = _hsv_colour(rng, (5, 20), (0.4, 0.8), (0.2, 0.5))
    light = _hsv_colour(rng, (8, 25), (0.3, 0.6), (0.5, 0.9))
    _, v = _coords(rng, h, w)
    warp = 8.0 * _noise(rng, h, w, rng.uniform(30, 80))
    freq = rng.uniform(0.05, 0.2) * 480 / min(h, w)
    grain = 0.5 + 0.5 * np.sin((v + warp * 3) * freq)
    grain = grain ** rng.uniform(1, 3)
    fine = 0.5 + 0.5 * _noise(rng, h, w, 2, octaves=1)
    t = np.clip(0.8 * grain + 0.2 * fine, 0, 1)[..., None]
    return np.asarray(dark * t + light * (1 - t), np.float32)


def _bg_cloth(rng: np.random.Generator, h: int, w: int) -> F32:
    colour = _hsv_colour(rng, (0, 180), (0.1, 0.55), (0.25, 0.95))
    u, v = _coords(rng, h, w)
    period = rng.uniform(2.5, 6.0)
    weave = np.sin(u * 2 * math.pi / period) * np.sin(v * 2 * math.pi / period)
    img = colour * (1 + 0.08 * weave[..., None])
    if rng.random() < 0.3:  # plaid stripes
        c2 = _hsv_colour(rng, (0, 180), (0.1, 0.7), (0.2, 0.9))
        sp = rng.uniform(30, 90)
        stripes = ((np.mod(u, sp) < sp * 0.25) | (np.mod(v, sp) < sp * 0.25)).astype(np.float32)
        img = img * (1 - 0.5 * stripes[..., None]) + c2 * 0.5 * stripes[..., None]
    return np.asarray(img + 0.03 * _noise(rng, h, w, 60)[..., None], np.float32)


def _bg_stone(rng: np.random.Generator, h: int, w: int) -> F32:
    base = _tint(rng, rng.uniform(0.4, 0.85), 0.05)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    img += rng.uniform(0.03, 0.08) * _noise(rng, h, w, rng.uniform(40, 150))[..., None]
    speck = rng.standard_normal((h, w), dtype=np.float32)
    speck = np.asarray(cv2.GaussianBlur(speck, (0, 0), rng.uniform(0.5, 1.2)), np.float32)
    img += rng.uniform(0.03, 0.1) * speck[..., None]
    return img


_BACKGROUNDS: Final[dict[str, Callable[[np.random.Generator, int, int], F32]]] = {
    "plain_light": lambda r, h, w: _bg_plain(r, h, w, False),
    "plain_dark": lambda r, h, w: _bg_plain(r, h, w, True),
    "gradient": _bg_gradient,
    "paper": _bg_paper,
    "wood": _bg_wood,
    "cloth": _bg_cloth,
    "stone": _bg_stone,
}


def _real_background(rng: np.random.Generator, photo: U8, h: int, w: int) -> F32:
    """Random crop of a real background (RGB, or RGBA from :func:`extract_backgrounds`).

    Crops stay inside the inner 90% (Roboflow's rotated copies have black corners) and
    keep at least 40% of the short side, so texture scale stays plausible. With an alpha
    channel, up to 12 crops are tried and the one with the least painted-out (alpha 0) area
    wins, so inpainting smears rarely show.
    """
    ph, pw = photo.shape[:2]
    painted = photo[..., 3] < 128 if photo.shape[2] == 4 else None
    mx, my = int(0.05 * pw), int(0.05 * ph)
    avail_w, avail_h = pw - 2 * mx, ph - 2 * my
    aspect = w / h
    best: tuple[float, int, int, int, int] | None = None
    for _ in range(12 if painted is not None else 1):
        frac = rng.uniform(0.4, 1.0)
        cw = int(min(avail_w, avail_h * aspect) * frac)
        ch = int(cw / aspect)
        cw, ch = max(2, min(cw, avail_w)), max(2, min(ch, avail_h))
        x0 = mx + int(rng.integers(0, max(1, avail_w - cw + 1)))
        y0 = my + int(rng.integers(0, max(1, avail_h - ch + 1)))
        bad = 0.0 if painted is None else float(painted[y0 : y0 + ch, x0 : x0 + cw].mean())
        if best is None or bad < best[0]:
            best = (bad, x0, y0, cw, ch)
        if bad == 0.0:
            break
    assert best is not None
    _, x0, y0, cw, ch = best
    crop = photo[y0 : y0 + ch, x0 : x0 + cw, :3]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    resized = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)
    return resized.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- composition


def _transform_cutout(
    rng: np.random.Generator, rgba: U8, long_side: float, feather: float
) -> tuple[F32, F32]:
    """Flip, scale and rotate a cut-out; returns (rgb float [0,1], alpha float [0,1]) patch."""
    img = rgba
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1]
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = np.asarray(
        cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=interp), np.uint8
    )
    if img.ndim == 2:  # 1-px wide resize can drop the channel axis on some builds
        img = img[..., None]
    angle = float(rng.uniform(0, 360))
    a = math.radians(angle)
    cw = math.ceil(abs(nw * math.cos(a)) + abs(nh * math.sin(a))) + 4
    ch = math.ceil(abs(nw * math.sin(a)) + abs(nh * math.cos(a))) + 4
    m = cv2.getRotationMatrix2D(((nw - 1) / 2, (nh - 1) / 2), angle, 1.0)
    m[0, 2] += (cw - 1) / 2 - (nw - 1) / 2
    m[1, 2] += (ch - 1) / 2 - (nh - 1) / 2
    # Premultiply so the bilinear sample at the edge does not drag in the old background.
    f = img.astype(np.float32) / 255.0
    prem = np.dstack([f[..., :3] * f[..., 3:4], f[..., 3]])
    warped = cv2.warpAffine(
        prem,
        m,
        (cw, ch),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    )
    if feather > 0:
        # Blurring colour and alpha together (premultiplied) keeps edge colour the pill's own.
        warped = cv2.GaussianBlur(warped, (0, 0), feather)
    alpha = warped[..., 3]
    rgb = warped[..., :3] / np.maximum(warped[..., 3:4], 1e-4)
    return np.clip(rgb, 0, 1).astype(np.float32), np.clip(alpha, 0, 1).astype(np.float32)


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(smaller, 1e-6)


def _lighting(rng: np.random.Generator, h: int, w: int, cfg: SynthConfig) -> F32:
    """Multiplicative illumination map: vignette, light gradient, soft cast shadow."""
    light = np.ones((h, w), np.float32)
    if rng.random() < cfg.lighting_prob:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / math.hypot(w, h)
        light *= 1 - rng.uniform(0.0, 0.45) * np.clip(r / 0.7, 0, 1) ** 2
        u, _ = _coords(rng, h, w)
        t = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
        light *= 1 + rng.uniform(-0.2, 0.2) * (t - 0.5)
    if rng.random() < cfg.cast_shadow_prob:
        n = int(rng.integers(3, 7))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rad = rng.uniform(0.2, 0.6) * max(h, w)
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        pts = np.stack(
            [
                cx + rad * np.cos(ang) * rng.uniform(0.5, 1.0, n),
                cy + rad * np.sin(ang) * rng.uniform(0.5, 1.0, n),
            ],
            1,
        )
        poly = np.zeros((h, w), np.float32)
        cv2.fillPoly(poly, [pts.astype(np.int32)], 1.0)
        poly = np.asarray(
            cv2.GaussianBlur(poly, (0, 0), rng.uniform(0.03, 0.1) * max(h, w)), np.float32
        )
        light *= 1 - rng.uniform(0.15, 0.45) * poly
    return light


def _photometric(rng: np.random.Generator, img: F32, cfg: SynthConfig) -> U8:
    """Camera-like degradations on the whole scene, in float [0, 1] then uint8.

    White balance, saturation, contrast and brightness are all affine in RGB, so they are
    folded into one 3x4 matrix (one ``cv2.transform`` pass); gamma is a uint8 lookup table.
    """
    gains = np.ones(3, np.float64)
    t = rng.uniform(-cfg.temperature, cfg.temperature)
    gains[0] += t
    gains[2] -= t
    sat = 1 + rng.uniform(-cfg.saturation, cfg.saturation)
    sat_m = sat * np.eye(3) + (1 - sat) / 3 * np.ones((3, 3))
    lin = sat_m @ np.diag(gains)
    con = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    mean = float((lin @ img.reshape(-1, 3).mean(axis=0)).mean())
    bias = (1 - con) * mean + rng.uniform(-cfg.brightness, cfg.brightness) * 0.5
    m = np.hstack([con * lin * 255.0, np.full((3, 1), bias * 255.0 + 0.5)]).astype(np.float32)
    x = np.asarray(cv2.transform(img, m), np.float32)
    out = np.clip(x, 0, 255).astype(np.uint8)
    g = rng.uniform(*cfg.gamma)
    lut = np.clip((np.arange(256) / 255.0) ** g * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.asarray(cv2.LUT(out, lut), np.uint8)
    if cfg.blur_sigma > 0 and rng.random() < cfg.blur_prob:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, cfg.blur_sigma)), np.uint8)
    if cfg.motion_blur_max > 1 and rng.random() < cfg.motion_blur_prob:
        k = int(rng.integers(2, cfg.motion_blur_max + 1))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
        kern = np.asarray(cv2.warpAffine(kern, rot, (k, k)), np.float32)
        kern /= max(float(kern.sum()), 1e-6)
        out = np.asarray(cv2.filter2D(out, -1, kern), np.uint8)
    if cfg.noise_sigma > 0 and rng.random() < cfg.noise_prob:
        sigma = rng.uniform(1.0, cfg.noise_sigma)
        noise = rng.standard_normal((*out.shape[:2], 1), dtype=np.float32) * sigma
        noise = noise + rng.standard_normal(out.shape, dtype=np.float32) * (sigma * 0.3)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        out = jpeg_roundtrip(out, q)
    return np.ascontiguousarray(out)


def jpeg_roundtrip(rgb: U8, quality: int) -> U8:
    """``rgb`` encoded as a JPEG of ``quality`` and decoded again (RGB in, RGB out), or
    ``rgb`` itself if OpenCV's codec refuses it: the artefacts of a recompressed photo."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if dec is None:
        return rgb
    return np.ascontiguousarray(cv2.cvtColor(dec, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def photometric_jitter(rgb: U8, rng: np.random.Generator, cfg: SynthConfig | None = None) -> U8:
    """A real photo under another camera and light: the scenes' whole-image photometric aug
    (white balance, saturation, contrast, brightness, gamma, blur, noise, JPEG) on its own.

    Pixels move, geometry does not, so the photo's labels stay valid.
    """
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    img = (arr.astype(np.float32) / 255.0).astype(np.float32)
    return _photometric(rng, img, cfg or SynthConfig())


def _place_pill(
    rng: np.random.Generator,
    cfg: SynthConfig,
    canvas: F32,
    cut: Cutout,
    size: float,
    truncate: bool,
    boxes: Sequence[Sequence[float]],
    shadow: tuple[bool, float, float] | None,
    cluster: tuple[float, float, float] | None = None,
) -> tuple[list[float], NDArray[np.bool_]] | None:
    """Paste one pill into ``canvas`` (in place); returns its box and mask, None if it vanished.

    Up to 60 random positions; every 15 misses the pill shrinks by 20%. The last attempt
    ignores overlap and truncation so a busy scene still gets its pill count.
    """
    h, w = canvas.shape[:2]
    min_px = float(min(cfg.min_pill_px, min(h, w)))
    thr = cfg.alpha_threshold / 255.0
    attempts = 60
    patch: tuple[F32, F32, NDArray[np.bool_], int, int, int, int, int] | None = None
    for attempt in range(attempts):
        if attempt and attempt % 15 == 0:
            size = max(min_px, size * 0.8)
            patch = None
        last = attempt == attempts - 1
        if patch is None:  # re-render only when the size changes: positions are cheap
            rgb, alpha = _transform_cutout(rng, cut.rgba, size, cfg.edge_feather)
            solid = alpha >= thr
            n_solid = int(np.count_nonzero(solid))
            if n_solid == 0:
                continue
            ys, xs = np.nonzero(solid)
            patch = (rgb, alpha, solid, n_solid, int(xs.min()), int(ys.min()),
                     int(xs.max()) + 1, int(ys.max()) + 1)  # fmt: skip
        rgb, alpha, solid, n_solid, bx1, by1, bx2, by2 = patch
        bw, bh = bx2 - bx1, by2 - by1
        slack_x = int(bw * (1 - cfg.min_visible)) if truncate and not last else 0
        slack_y = int(bh * (1 - cfg.min_visible)) if truncate and not last else 0
        lo_x, hi_x = -bx1 - slack_x, w - bx2 + slack_x
        lo_y, hi_y = -by1 - slack_y, h - by2 + slack_y
        if hi_x < lo_x or hi_y < lo_y:
            continue  # larger than the canvas: the next shrink helps
        if cluster is None:
            ox = int(rng.integers(lo_x, hi_x + 1))
            oy = int(rng.integers(lo_y, hi_y + 1))
        else:  # near the pile's centre: pills touch and overlap as in a counting tray
            ccx, ccy, spread = cluster
            ox = int(np.clip(rng.normal(ccx, spread) - (bx1 + bx2) / 2, lo_x, hi_x))
            oy = int(np.clip(rng.normal(ccy, spread) - (by1 + by2) / 2, lo_y, hi_y))
        ph, pw = alpha.shape
        cx1, cy1 = max(0, ox), max(0, oy)
        cx2, cy2 = min(w, ox + pw), min(h, oy + ph)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        sub_solid = solid[cy1 - oy : cy2 - oy, cx1 - ox : cx2 - ox]
        vis = int(np.count_nonzero(sub_solid))
        if vis == 0 or vis < cfg.min_visible * n_solid:
            continue
        sy, sx = np.nonzero(sub_solid)
        box = [
            float(cx1 + sx.min()),
            float(cy1 + sy.min()),
            float(cx1 + sx.max() + 1),
            float(cy1 + sy.max() + 1),
        ]
        if not last and any(_overlap(box, b) > cfg.max_overlap for b in boxes):
            continue
        if shadow is not None:
            _, light_dir, strength = shadow
            _drop_shadow(rng, canvas, alpha, ox, oy, size, light_dir, strength)
        a = alpha[cy1 - oy : cy2 - oy, cx1 - ox : cx2 - ox, None]
        pill = np.clip(rgb[cy1 - oy : cy2 - oy, cx1 - ox : cx2 - ox] * rng.uniform(0.9, 1.1), 0, 1)
        canvas[cy1:cy2, cx1:cx2] = canvas[cy1:cy2, cx1:cx2] * (1 - a) + pill * a
        full = np.zeros((h, w), np.bool_)
        full[cy1:cy2, cx1:cx2] = sub_solid
        return box, full
    return None


def _drop_shadow(
    rng: np.random.Generator,
    canvas: F32,
    alpha: F32,
    ox: int,
    oy: int,
    size: float,
    light_dir: float,
    strength: float,
) -> None:
    """Darken the canvas under a blurred copy of the alpha, offset away from the light."""
    h, w = canvas.shape[:2]
    ph, pw = alpha.shape
    off = size * rng.uniform(0.03, 0.1)
    dx, dy = off * math.cos(light_dir), off * math.sin(light_dir)
    blur = max(0.5, size * rng.uniform(0.03, 0.08))
    pad = math.ceil(3 * blur + abs(dx) + abs(dy)) + 1
    sh = cv2.copyMakeBorder(alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    mt = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    sh = cv2.warpAffine(sh, mt, (sh.shape[1], sh.shape[0]))
    sh = cv2.GaussianBlur(sh, (0, 0), blur)
    sx1, sy1 = max(0, ox - pad), max(0, oy - pad)
    sx2, sy2 = min(w, ox + pw + pad), min(h, oy + ph + pad)
    if sx2 > sx1 and sy2 > sy1:
        win = sh[sy1 - oy + pad : sy2 - oy + pad, sx1 - ox + pad : sx2 - ox + pad]
        canvas[sy1:sy2, sx1:sx2] *= 1 - strength * win[..., None]


def synthesize_scene(
    cutouts: Sequence[Cutout],
    rng: np.random.Generator,
    cfg: SynthConfig | None = None,
    *,
    backgrounds: Sequence[U8] | None = None,
) -> Scene:
    """Compose one scene of ``cfg.n_pills`` pills drawn (with replacement) from ``cutouts``.

    Steps: background (procedural, or with ``cfg.real_background_prob`` a crop of one of
    ``backgrounds``); a scene-level pill size, capped so the pills fit (``max_fill``), with
    per-pill jitter; each pill flipped, rotated, feathered and placed where it overlaps no
    earlier pill by more than ``max_overlap`` (shrinking after repeated misses; if all else
    fails it is placed anyway, so the pill count is always in range); drop shadows along one
    light direction; scene lighting; photometric aug. Deterministic for a given ``rng`` state.
    """
    if not cutouts:
        raise ValueError("synthesize_scene needs at least one cut-out")
    cfg = cfg or SynthConfig()
    w, h = cfg.width, cfg.height
    if rng.random() < cfg.swap_orientation_prob:
        w, h = h, w
    short = min(w, h)

    # -- background
    real = list(backgrounds or [])
    if real and rng.random() < cfg.real_background_prob:
        kind = "real"
        canvas = _real_background(rng, real[int(rng.integers(len(real)))], h, w)
    else:
        kinds = [k for k in BACKGROUND_KINDS if cfg.background_weights.get(k, 0.0) > 0]
        p = np.array([cfg.background_weights[k] for k in kinds], np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        canvas = _BACKGROUNDS[kind](rng, h, w)
    canvas = np.clip(canvas, 0, 1).astype(np.float32)

    # -- sizes
    n = int(rng.integers(cfg.n_pills[0], cfg.n_pills[1] + 1))
    cap = math.sqrt(cfg.max_fill * w * h / (0.7 * n)) / short
    hi = min(cfg.pill_size[1], cap, 0.95)
    lo = min(cfg.pill_size[0], hi)
    scene_size = math.exp(rng.uniform(math.log(lo), math.log(hi))) * short

    shadow = rng.random() < cfg.drop_shadow_prob
    light_dir = rng.uniform(0, 2 * math.pi)
    shadow_strength = rng.uniform(0.2, 0.55)
    pool = list(cutouts)
    if cfg.same_pill_prob > 0 and rng.random() < cfg.same_pill_prob:
        pool = [pool[int(i)] for i in rng.choice(len(pool), min(2, len(pool)), replace=False)]
    cluster: tuple[float, float, float] | None = None
    if cfg.cluster_prob > 0 and rng.random() < cfg.cluster_prob:
        spread = 0.3 * math.sqrt(n) * scene_size
        cluster = (rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, spread)

    boxes: list[list[float]] = []
    masks: list[NDArray[np.bool_]] = []
    class_ids: list[int] = []
    min_px = float(min(cfg.min_pill_px, short))
    draws = 0
    while len(boxes) < n:
        draws += 1
        if draws > 20 * n:  # pragma: no cover - only cut-outs that vanish at every size
            raise RuntimeError("could not place pills: are the cut-outs degenerate?")
        cut = pool[int(rng.integers(len(pool)))]
        native = max(cut.rgba.shape[:2])
        size = scene_size * math.exp(rng.uniform(-cfg.size_jitter, cfg.size_jitter))
        size = max(min(size, native * cfg.max_upscale, 0.95 * short), min_px)
        truncate = bool(rng.random() < cfg.truncate_prob)
        placed = _place_pill(
            rng,
            cfg,
            canvas,
            cut,
            size,
            truncate,
            boxes,
            (shadow, light_dir, shadow_strength) if shadow else None,
            cluster,
        )
        if placed is not None:
            box, mask = placed
            boxes.append(box)
            masks.append(mask)
            class_ids.append(cut.class_id)

    if cluster is not None:  # a pile: overlaps are the point, label what shows
        boxes, masks, class_ids = _visible_only(boxes, masks, class_ids)
    canvas *= _lighting(rng, h, w, cfg)[..., None]
    if cfg.photometric:
        image = _photometric(rng, np.clip(canvas, 0, 1), cfg)
    else:
        image = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Scene(
        image=image,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        class_ids=np.asarray(class_ids, np.int64),
        masks=masks,
        background=kind,
    )


def _visible_only(
    boxes: list[list[float]], masks: list[NDArray[np.bool_]], class_ids: list[int]
) -> tuple[list[list[float]], list[NDArray[np.bool_]], list[int]]:
    """Boxes of what stays visible once later pills cover earlier ones (piles only).

    A pill mostly hidden under others is labelled by its visible part, as a person would
    box it; one with under a quarter of it left is dropped (nothing to learn from).
    """
    covered = np.zeros_like(masks[0]) if masks else None
    out_b: list[list[float]] = []
    out_m: list[NDArray[np.bool_]] = []
    out_c: list[int] = []
    for box, mask, cid in reversed(list(zip(boxes, masks, class_ids, strict=True))):
        assert covered is not None
        vis = mask & ~covered
        covered |= mask
        n_all, n_vis = int(np.count_nonzero(mask)), int(np.count_nonzero(vis))
        if n_all == 0 or n_vis < 0.25 * n_all:
            continue
        if n_vis < n_all:
            ys, xs = np.nonzero(vis)
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        out_b.append(box)
        out_m.append(vis)
        out_c.append(cid)
    return out_b[::-1], out_m[::-1], out_c[::-1]


def write_synthetic_yolo(
    out_dir: str | os.PathLike[str],
    cutouts: Sequence[Cutout],
    n_scenes: int,
    cfg: SynthConfig | None = None,
    seed: int = 0,
    *,
    backgrounds: Sequence[U8] | None = None,
    class_mode: Literal["pill", "source"] = "pill",
    prefix: str = "synth",
    jpeg_quality: int = 95,
) -> Path:
    """Write ``n_scenes`` scenes as a YOLO folder; returns ``out_dir``.

    Layout: ``out_dir/images/<prefix>_<i>.jpg``, ``out_dir/labels/<prefix>_<i>.txt`` (lines
    ``class cx cy w h`` normalised; class 0 "pill" for ``class_mode="pill"``, the source
    class id for ``"source"``) and ``out_dir/<prefix>_scenes.jsonl`` (one record per scene
    with pixel boxes and source class ids, for the classifier). Existing files are kept, so
    scenes can be added to a folder of real images. Scene ``i`` uses the generator seeded with
    ``(seed, i)``: independent of ``n_scenes`` and of the other scenes.
    """
    cfg = cfg or SynthConfig()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    records: list[str] = []
    for i in range(n_scenes):
        rng = np.random.default_rng([seed, i])
        scene = synthesize_scene(cutouts, rng, cfg, backgrounds=backgrounds)
        h, w = scene.image.shape[:2]
        name = f"{prefix}_{i:06d}"
        ok = cv2.imwrite(
            os.fspath(out / "images" / f"{name}.jpg"),
            cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality],
        )
        if not ok:
            raise OSError(f"could not write {out / 'images' / name}.jpg")
        lines = []
        for box, cid in zip(scene.boxes.tolist(), scene.class_ids.tolist(), strict=True):
            if class_mode == "source" and cid < 0:
                raise ValueError("class_mode='source' needs cut-outs with class ids")
            lines.append(format_line(0 if class_mode == "pill" else int(cid), box, w, h))
        write_label_file(out / "labels" / f"{name}.txt", lines)
        records.append(
            json.dumps(
                {
                    "image": f"images/{name}.jpg",
                    "width": w,
                    "height": h,
                    "boxes": [[round(v, 2) for v in b] for b in scene.boxes.tolist()],
                    "class_ids": scene.class_ids.tolist(),
                    "background": scene.background,
                }
            )
        )
    with (out / f"{prefix}_scenes.jsonl").open("w", encoding="utf-8") as fh:
        fh.write("\n".join(records) + ("\n" if records else ""))
    return out
