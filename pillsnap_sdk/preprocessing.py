"""The one preprocessing implementation shared by training, export checks and serving.

A classifier is only as good as the agreement between the pixels it was trained on and the
pixels it sees in production. The training datasets, the torch-vs-ONNX parity checks
and the SDK all call :func:`preprocess` with the :class:`PreprocessSpec` stored in the
bundle manifest, so a change here changes all three at once (the golden tests pin it).

Geometry is returned with the tensor (:class:`Letterbox`) so that boxes found on the
network input map back to the caller's pixels exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Letterbox",
    "PreprocessSpec",
    "crop_with_margin",
    "preprocess",
    "preprocess_batch",
    "resize_image",
]

ResizeMode = Literal["center-crop", "letterbox", "stretch"]
Interpolation = Literal["nearest", "linear", "area", "cubic", "area-linear"]

_CV2_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}


def _interp_flag(name: Interpolation, src_w: int, src_h: int, out_w: int, out_h: int) -> int:
    """OpenCV flag for ``name``; ``area-linear`` picks by the direction of the resize.

    Why ``area-linear``: OpenCV's INTER_AREA is the right filter when shrinking (it averages
    every source pixel) but degenerates to nearest-neighbour-like blocks when enlarging (a
    4-pixel ramp resized to 10 comes out 0 0 8 16 16 32 32 40 48 48). Pill crops are
    enlarged from ~60 px at 0.3 MP and shrunk from ~400 px at 12 MP: a classifier trained on
    blocky enlargements named the same pill differently at another resolution. Area when
    the image shrinks (in area), linear when it grows, makes both look like a smooth photo.
    """
    if name != "area-linear":
        return _CV2_INTERP[name]
    return cv2.INTER_AREA if out_w * out_h < src_w * src_h else cv2.INTER_LINEAR


class PreprocessSpec(BaseModel):
    """How a model expects its input; stored per model in the bundle manifest."""

    # NaN/inf in mean or std made every tensor NaN ("nothing is ever detected").
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    resize: ResizeMode = "letterbox"
    size: tuple[int, int] = Field(default=(224, 224), description="(height, width) of the input")
    interpolation: Interpolation = "linear"
    colour_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pad_value: int = Field(default=114, ge=0, le=255)
    # timm models use 0.875-1.0; a tiny crop_pct (re-sealed manifest) scaled every crop by
    # 1/crop_pct before cutting the centre: 1e-4 asked cv2 for 15 TB, 0.02 for 1 GB.
    crop_pct: float = Field(default=1.0, ge=0.5, le=1.0, description="center-crop only")

    @field_validator("size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (1 <= v[0] <= 4096 and 1 <= v[1] <= 4096):
            raise ValueError("size must be 1..4096 pixels per side")
        return v

    @field_validator("mean")
    @classmethod
    def _sane_mean(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(abs(m) > 255 for m in v):
            raise ValueError("mean must be within [-255, 255]")
        return v

    @field_validator("std")
    @classmethod
    def _nonzero(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 1e-3 <= abs(s) <= 1e3 for s in v):
            raise ValueError("std must be 1e-3..1e3 in magnitude")
        return v


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Maps network-input coordinates back to source-image pixels.

    ``x_src = (x_net - pad_x) / scale_x``; clipped to the source image.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int

    def to_source(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map ``Nx4`` xyxy boxes from network input pixels to source pixels (clipped)."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0] = (boxes[:, 0] - self.pad_x) / self.scale_x
        out[:, 2] = (boxes[:, 2] - self.pad_x) / self.scale_x
        out[:, 1] = (boxes[:, 1] - self.pad_y) / self.scale_y
        out[:, 3] = (boxes[:, 3] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0.0, float(self.src_w), out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, float(self.src_h), out=out[:, 1::2])
        return out

    def to_network(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Inverse of :meth:`to_source` (without clipping); used by tests and training."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = boxes[:, 0::2] * self.scale_x + self.pad_x
        out[:, 1::2] = boxes[:, 1::2] * self.scale_y + self.pad_y
        return out


def _cv2_resize(
    rgb: npt.NDArray[np.uint8], width: int, height: int, interp: Interpolation
) -> npt.NDArray[np.uint8]:
    src_h, src_w = int(rgb.shape[0]), int(rgb.shape[1])
    if src_w == width and src_h == height:
        return rgb
    flag = _interp_flag(interp, src_w, src_h, width, height)
    return np.asarray(cv2.resize(rgb, (width, height), interpolation=flag), dtype=np.uint8)


def resize_image(
    rgb: npt.NDArray[np.uint8], spec: PreprocessSpec
) -> tuple[npt.NDArray[np.uint8], Letterbox]:
    """Resize an RGB ``uint8`` image to ``spec.size`` per ``spec.resize``; keep the geometry."""
    src_h, src_w = int(rgb.shape[0]), int(rgb.shape[1])
    out_h, out_w = spec.size
    interp = spec.interpolation
    if spec.resize == "stretch":
        sx, sy = out_w / src_w, out_h / src_h
        resized = _cv2_resize(rgb, out_w, out_h, interp)
        return resized, Letterbox(sx, sy, 0.0, 0.0, src_w, src_h)
    if spec.resize == "letterbox":
        r = min(out_w / src_w, out_h / src_h)
        new_w = max(1, min(out_w, round(src_w * r)))
        new_h = max(1, min(out_h, round(src_h * r)))
        resized = _cv2_resize(rgb, new_w, new_h, interp)
        pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
        canvas = np.full((out_h, out_w, 3), spec.pad_value, dtype=np.uint8)
        canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
        return canvas, Letterbox(new_w / src_w, new_h / src_h, pad_x, pad_y, src_w, src_h)
    # center-crop: scale the shorter side to size/crop_pct, then cut the centre.
    r = max(out_w / src_w, out_h / src_h) / spec.crop_pct
    new_w = max(out_w, round(src_w * r))
    new_h = max(out_h, round(src_h * r))
    resized = _cv2_resize(rgb, new_w, new_h, interp)
    x0, y0 = (new_w - out_w) // 2, (new_h - out_h) // 2
    cropped: npt.NDArray[np.uint8] = resized[y0 : y0 + out_h, x0 : x0 + out_w]
    return cropped, Letterbox(new_w / src_w, new_h / src_h, -x0, -y0, src_w, src_h)


def _normalise_into(
    resized: npt.NDArray[np.uint8], spec: PreprocessSpec, out: npt.NDArray[np.float32]
) -> None:
    """Write the ``3xHxW`` float32 tensor for ``resized`` into ``out`` (no extra copies)."""
    order = (0, 1, 2) if spec.colour_order == "RGB" else (2, 1, 0)
    for dst, src in enumerate(order):
        scale = np.float32(1.0 / (255.0 * spec.std[src]))
        shift = np.float32(spec.mean[src] / spec.std[src])
        np.multiply(resized[:, :, src], scale, out=out[dst], dtype=np.float32)
        np.subtract(out[dst], shift, out=out[dst])


def preprocess(
    rgb: npt.NDArray[np.uint8], spec: PreprocessSpec
) -> tuple[npt.NDArray[np.float32], Letterbox]:
    """Return the ``3xHxW`` float32 network input for one RGB image, and its geometry.

    ``value = (pixel / 255 - mean) / std`` per channel, in ``spec.colour_order``.
    """
    resized, box = resize_image(rgb, spec)
    out = np.empty((3, spec.size[0], spec.size[1]), dtype=np.float32)
    _normalise_into(resized, spec, out)
    return out, box


def preprocess_batch(
    images: list[npt.NDArray[np.uint8]], spec: PreprocessSpec
) -> tuple[npt.NDArray[np.float32], list[Letterbox]]:
    """Preprocess several images into one preallocated ``Nx3xHxW`` batch."""
    batch = np.empty((len(images), 3, spec.size[0], spec.size[1]), dtype=np.float32)
    boxes: list[Letterbox] = []
    for i, img in enumerate(images):
        resized, box = resize_image(img, spec)
        _normalise_into(resized, spec, batch[i])
        boxes.append(box)
    return batch, boxes


def crop_with_margin(
    rgb: npt.NDArray[np.uint8], box: tuple[float, float, float, float], margin: float
) -> npt.NDArray[np.uint8]:
    """Cut ``box`` (xyxy, source pixels) grown by ``margin`` x its size on each side.

    The same function cuts training crops from labelled boxes and serving crops from
    detections, so the classifier sees the same context around a pill in both.
    """
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    x1 = int(np.floor(max(0.0, x1 - margin * bw)))
    y1 = int(np.floor(max(0.0, y1 - margin * bh)))
    x2 = int(np.ceil(min(float(w), x2 + margin * bw)))
    y2 = int(np.ceil(min(float(h), y2 + margin * bh)))
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    x1, y1 = min(x1, w - 1), min(y1, h - 1)
    return rgb[y1:y2, x1:x2]
