"""Turn whatever a caller hands us into one RGB ``uint8`` array, or raise InvalidImageError.

Why one function: the classifier was trained on RGB pixels as a camera shows them, so every
input kind (path, encoded bytes, numpy, PIL) must end in the *same* pixels. Files honour
EXIF orientation (phones store portrait photos rotated), exotic modes (16-bit, palette,
CMYK, alpha) are reduced deterministically, and a pixel limit is checked from the header
before any pixel is decoded, so a 40 KB "decompression bomb" cannot allocate gigabytes.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImageError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageInput", "RGBImage", "load_image"]

RGBImage: TypeAlias = npt.NDArray[np.uint8]
ImageInput: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | npt.NDArray[Any] | Image.Image
)

#: Default pixel limit (width * height): 64 MP covers every phone camera (a 200 MP sensor
#: writes 50 MP JPEGs by default) while capping the decoded RGB buffer at ~192 MB.
DEFAULT_MAX_PIXELS = 64_000_000

# Our own limit is checked from the header; PIL's global bomb check stays as a second net
# (DecompressionBombError above 2 x Image.MAX_IMAGE_PIXELS whatever max_pixels says).
_ALPHA_BACKGROUND = (255, 255, 255)


def load_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBImage:
    """Return a C-contiguous ``HxWx3`` RGB ``uint8`` array for any supported input.

    Accepts a path (``str``/``PathLike``), encoded bytes, a numpy ``uint8`` array
    (``HxWx3`` RGB, ``HxWx4`` RGBA, ``HxW`` or ``HxWx1`` grey) or a PIL image.
    Raises :class:`InvalidImageError` for anything else, with a message that says why.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image, max_pixels)
    if isinstance(image, Image.Image):
        return _from_pil(image, max_pixels, source="PIL image")
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise InvalidImageError("empty bytes: pass the encoded file content (JPEG/PNG/...)")
        return _decode(io.BytesIO(data), max_pixels, source="bytes")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            # is_file() itself raises for over-long names and unreadable parents.
            is_file = path.is_file()
            data = path.read_bytes() if is_file else b""
        except (OSError, ValueError) as exc:
            raise InvalidImageError(f"cannot read image file {str(path)[:200]!r}: {exc}") from exc
        if not is_file:
            raise InvalidImageError(f"no such image file: {path} (check the path)")
        if not data:
            raise InvalidImageError(f"{path} is empty (0 bytes): retake or re-upload the photo")
        return _decode(io.BytesIO(data), max_pixels, source=str(path))
    raise InvalidImageError(
        f"unsupported image type {type(image).__name__}: pass a path, encoded bytes, "
        "a uint8 numpy array (HxWx3 RGB or HxW grey) or a PIL image"
    )


def _check_size(width: int, height: int, max_pixels: int, source: str) -> None:
    if width < 1 or height < 1:
        raise InvalidImageError(f"{source}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidImageError(
            f"{source}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,}; downscale the photo or raise max_image_pixels"
        )


def _decode(stream: io.BytesIO, max_pixels: int, source: str) -> RGBImage:
    try:
        img = _open(stream, max_pixels)
    except UnidentifiedImageError as exc:
        raise InvalidImageError(
            f"{source}: not a decodable image ({exc.__class__.__name__}); "
            "send a JPEG, PNG, WebP, BMP, TIFF or GIF photo"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImageError(
            f"{source}: image header claims too many pixels ({exc}); the limit is "
            f"{max_pixels:,} pixels: downscale the photo"
        ) from exc
    except Exception as exc:  # PIL raises many types for hostile headers
        raise InvalidImageError(f"{source}: cannot parse image header: {exc}") from exc
    return _from_pil(img, max_pixels, source)


def _open(stream: io.BytesIO, max_pixels: int) -> Image.Image:
    """``Image.open`` without touching the process-wide warning filters on the hot path.

    PIL warns (DecompressionBombWarning) above ``Image.MAX_IMAGE_PIXELS`` while parsing the
    header, i.e. before our own limit is checked. ``warnings.catch_warnings`` is not
    thread-safe (it swaps the global filter list), so it is only used when the caller
    raised ``max_pixels`` above PIL's threshold and the warning could concern an image we
    accept. With the default limit every image PIL warns about is refused right after
    (the warning may still reach the caller's log; as an error it is caught below).
    """
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit is None or max_pixels <= pil_limit:
        return Image.open(stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(stream)


def _from_pil(img: Image.Image, max_pixels: int, source: str) -> RGBImage:
    _check_size(img.width, img.height, max_pixels, source)
    try:
        # Decode only now, after the size check. Also covers a caller's lazily opened
        # ``Image.open`` result, whose pixels may be truncated just like raw bytes.
        img.load()
    except Exception as exc:  # truncated / corrupt payloads: OSError, SyntaxError, ...
        raise InvalidImageError(
            f"{source}: image data is corrupt or truncated ({exc}); retake or re-upload"
        ) from exc
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)  # animated GIF/WebP/APNG: the first frame is the photo
        img = ImageOps.exif_transpose(img) or img
        rgb = _to_rgb(img)
    except InvalidImageError:
        raise
    except Exception as exc:
        raise InvalidImageError(f"{source}: cannot convert image to RGB: {exc}") from exc
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> RGBImage:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _grey_to_rgb(_wide_to_uint8(np.asarray(img), mode))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_ALPHA_BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _wide_to_uint8(arr: npt.NDArray[Any], mode: str) -> npt.NDArray[np.uint8]:
    """Map 16-bit/32-bit/float grey to 8 bits by range, not by clipping."""
    if mode == "F":
        values = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        out: npt.NDArray[np.uint8] = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        return out
    wide = arr.astype(np.int64)
    peak = int(wide.max(initial=0))
    if peak <= 255 and mode == "I":
        return np.clip(wide, 0, 255).astype(np.uint8)
    return np.clip((wide * 255 + 32767) // 65535, 0, 255).astype(np.uint8)


def _grey_to_rgb(grey: npt.NDArray[np.uint8]) -> RGBImage:
    out: RGBImage = np.repeat(grey[:, :, None], 3, axis=2)
    return out


def _from_array(arr: npt.NDArray[Any], max_pixels: int) -> RGBImage:
    if arr.dtype != np.uint8:
        raise InvalidImageError(
            f"numpy image must have dtype uint8, got {arr.dtype}; "
            "convert with np.clip(a, 0, 255).astype(np.uint8) (scale floats by 255 first)"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        _check_size(arr.shape[1], arr.shape[0], max_pixels, "numpy image")
        return np.ascontiguousarray(_grey_to_rgb(arr))
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        _check_size(arr.shape[1], arr.shape[0], max_pixels, "numpy image")
        if arr.shape[2] == 4:
            rgba = Image.fromarray(np.ascontiguousarray(arr), "RGBA")
            return _from_pil(rgba, max_pixels, "numpy image")
        return np.ascontiguousarray(arr)
    raise InvalidImageError(
        f"numpy image must be HxWx3 (RGB), HxWx4 (RGBA) or HxW (grey), got shape {arr.shape}"
    )
