"""A photo decoded only as finely as the pipeline needs, with finer pixels on demand.

Why: a 12 MP phone JPEG (4032x3024) took longer to decode than the two models took to run
on it, yet the detector looks at a 448 px letterbox, and a pill's crop only needs the
classifier's 224 px. libjpeg decodes at 1/2, 1/4 or 1/8 in the DCT domain (Pillow's
``draft``) for a fraction of the time and memory, so:

1. the photo is decoded at the coarsest scale still :data:`DETECTOR_OVERSAMPLE` times
   the detector's input (:func:`load_photo`; 1/4 for 12 MP: 1008x756 for 448x336);
2. after detection, each crop is cut from that decode unless the pill is so small in
   the frame that its crop would have fewer pixels than the classifier was trained on
   (:data:`MIN_CROP_SIDE`); then the photo is decoded again, as finely as that pill needs
   (full size at worst), see :func:`crop_scale`.

Boxes are always reported in full-size pixels. Photos at or below the detector's input
size, PNGs, arrays and PIL images are decoded exactly as :func:`~.image.load_image` does:
same pixels, same results.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .decode import (
    JPEG_SCALES,
    decode_bytes,
    decode_opened,
    exif_orientation,
    is_jpeg,
    open_checked,
)
from .image import ChannelOrder, ImageInput, RGBImage, from_decoded, read_encoded
from .preprocessing import PreprocessSpec, crop_with_margin

__all__ = ["Photo", "crop_scale", "input_factor", "load_photo", "take_crops", "to_full"]

F32 = npt.NDArray[np.float32]
#: Fewest pixels a crop's long side may have at the scale it is cut from. The classifier
#: was trained on crops from 0.3 MP photos (long side with margin: 5th percentile 31 px,
#: median 69 px, then rescaled 0.5-3x), so a crop of >= 32 px is inside what it learned;
#: only a pill smaller than that at the coarse scale makes the photo be decoded again,
#: finer. Measured on 40 multi-pill photos enlarged to 12 MP (845 labelled pills, see
#: docs/performance.md): crops from the 1/4 decode named 67.2 % right (8 wrong), crops
#: that always filled the 224 px input from a full-size re-decode 65.4 % (12 wrong),
#: the SDK before, at full size, 65.8 % (12 wrong); the 0.3 MP photos 66.6 % (7 wrong).
MIN_CROP_SIDE = 32
#: How many times the detector input's size the first decode must be: 2.0 picks 1/4 for
#: 12 MP (1008x756 for a 448 input). At 1.0 (1/8, 504x378) the detector lost 3 of 66
#: pills found on full-size 12 MP pixels (34 photos), at 2.0 one; docs/performance.md.
DETECTOR_OVERSAMPLE = 2.0


@dataclass(frozen=True, slots=True)
class Photo:
    """Pixels at ``1/scale`` of the photo, its full size, and how to decode it finer.

    ``size`` is (width, height) at full resolution with EXIF orientation applied, i.e.
    the coordinate system of every reported box. ``encoded`` is kept only for a JPEG
    decoded coarser than full size.
    """

    rgb: RGBImage
    scale: int
    size: tuple[int, int]
    encoded: bytes | None = None
    max_pixels: int = 0
    source: str = ""

    def pixels(self, scale: int) -> RGBImage:
        """The photo at ``1/scale`` (``scale`` no coarser than :attr:`scale`)."""
        if scale == self.scale:
            return self.rgb
        if self.encoded is None or scale > self.scale:
            raise ValueError(f"{self.source}: no pixels at 1/{scale} (decoded at 1/{self.scale})")
        return decode_bytes(self.encoded, self.max_pixels, self.source, scale=scale)


def input_factor(spec: PreprocessSpec, width: int, height: int) -> float:
    """How much :func:`~.preprocessing.resize_image` enlarges a ``width x height`` image
    (< 1 shrinks): above 1, the model sees fewer real pixels than its input holds."""
    out_h, out_w = spec.size
    fx, fy = out_w / max(width, 1), out_h / max(height, 1)
    if spec.resize == "letterbox":
        return min(fx, fy)
    if spec.resize == "stretch":
        return max(fx, fy)
    return max(fx, fy) / spec.crop_pct


def _scaled(size: tuple[int, int], scale: int) -> tuple[int, int]:
    return (math.ceil(size[0] / scale), math.ceil(size[1] / scale))


def load_photo(
    image: ImageInput,
    *,
    max_pixels: int,
    channel_order: ChannelOrder,
    detector: PreprocessSpec | None,
) -> Photo:
    """Decode ``image`` as coarsely as the ``detector`` input allows (see module doc).

    Without a detector (``None``), or for anything but a JPEG, the full-size pixels of
    :func:`~.image.load_image`; every input check and limit is the same as there.
    """
    rgb = from_decoded(image, max_pixels, channel_order)
    if rgb is not None:
        return Photo(rgb, 1, (int(rgb.shape[1]), int(rgb.shape[0])))
    data, source = read_encoded(image, max_pixels)
    img = open_checked(data, max_pixels, source)
    scale = 1
    if detector is not None and is_jpeg(img):
        w, h = img.size
        full = (h, w) if exif_orientation(img) in (5, 6, 7, 8) else (w, h)
        for k in reversed(JPEG_SCALES[1:]):
            if input_factor(detector, *_scaled(full, k)) * DETECTOR_OVERSAMPLE <= 1.0:
                scale = k
                break
    rgb, used = decode_opened(img, source, scale=scale)
    if used == 1:
        return Photo(rgb, 1, (int(rgb.shape[1]), int(rgb.shape[0])))
    return Photo(rgb, used, full, data, max_pixels, source)


def to_full(boxes: F32, photo: Photo) -> F32:
    """Boxes found on ``photo.rgb`` in full-size pixels (clipped to the photo)."""
    if photo.scale == 1:
        return boxes
    out = boxes * np.float32(photo.scale)
    np.clip(out[:, 0::2], 0.0, float(photo.size[0]), out=out[:, 0::2])
    np.clip(out[:, 1::2], 0.0, float(photo.size[1]), out=out[:, 1::2])
    return out


def _crop_size(box: Sequence[float], margin: float, size: tuple[int, int]) -> tuple[float, float]:
    """Full-size width and height of :func:`crop_with_margin`'s cut (clipped to the photo)."""
    x1, y1, x2, y2 = box
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    cw = min(float(size[0]), x2 + margin * bw) - max(0.0, x1 - margin * bw)
    ch = min(float(size[1]), y2 + margin * bh) - max(0.0, y1 - margin * bh)
    return max(cw, 1.0), max(ch, 1.0)


def crop_scale(photo: Photo, boxes: Sequence[Sequence[float]], margin: float) -> int:
    """The coarsest scale (no coarser than ``photo.scale``) at which every crop's long side
    still has :data:`MIN_CROP_SIDE` pixels (or all it has, at full size)."""
    scale = photo.scale
    for box in boxes:
        side = max(_crop_size(box, margin, photo.size))
        while scale > 1 and math.floor(side / scale) < MIN_CROP_SIDE:
            scale //= 2
    return scale


def take_crops(
    photo: Photo,
    boxes: Sequence[Sequence[float]],
    margin: float,
    timings: dict[str, float] | None = None,
) -> list[RGBImage]:
    """Crops of full-size ``boxes`` (grown by ``margin``) as fine as the classifier needs
    (:func:`crop_scale`), decoding the photo again when ``photo.rgb`` is too coarse; that
    decode's milliseconds are added to ``timings["decode"]`` (and ``"_redecode"``)."""
    if not boxes:
        return []
    scale = crop_scale(photo, boxes, margin)
    t0 = time.perf_counter()
    rgb = photo.pixels(scale)
    if timings is not None and scale != photo.scale:
        ms = (time.perf_counter() - t0) * 1000.0
        timings["decode"] = timings.get("decode", 0.0) + ms
        timings["_redecode"] = ms
    if scale == 1:
        return [crop_with_margin(rgb, (b[0], b[1], b[2], b[3]), margin) for b in boxes]
    f = 1.0 / scale
    return [crop_with_margin(rgb, (b[0] * f, b[1] * f, b[2] * f, b[3] * f), margin) for b in boxes]
