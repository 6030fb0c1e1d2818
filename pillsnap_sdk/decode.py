"""Encoded bytes or a PIL image -> one ``HxWx3`` RGB ``uint8`` array, within a byte budget.

Why this is not just ``Image.open(...).convert("RGB")``:

* **An allow-list of formats.** ``Image.open`` tries every plugin PIL has: EPS runs
  Ghostscript on attacker PostScript, an ICO decodes its embedded PNG inside ``open``,
  and SGI, PCX, TGA, DDS, QOI, IM... all decode. Photos arrive as JPEG, PNG, WebP, BMP,
  TIFF or GIF; only those plugins are ever asked to parse a header.
* **No process-global state per call.** ``Image.open`` warns
  (``DecompressionBombWarning``) above PIL's threshold, and silencing that needs
  ``warnings.catch_warnings``, which swaps the process-wide filter list and is not
  thread-safe. Instantiating the allowed plugin
  directly never warns; the SDK's own limits are checked right after.
* **Limits from the header, before a pixel is decoded**: the pixel limit, PIL's hard net,
  JPEG scan count and plausible size, and the memory budget of :mod:`.imagelimits`.
  Before that, :mod:`.headerscan` walks the container structure, because Pillow's own
  header parsers spend Python time and memory per marker, chunk or sub-block.
* **Pillow's corrupt-metadata notes stay quiet.** Hostile EXIF/IFD data makes Pillow
  ``warnings.warn`` ("Truncated File Read", "Tag data larger than file", one per tag) to
  stderr, polluting library users' logs and CLI output. A ``catch_warnings`` scoped to
  each decode is not thread-safe before Python 3.14, so one ``ignore`` filter for
  ``UserWarning`` from the three plugins that emit these notes (:data:`PIL_NOISE_MODULES`)
  is installed once, at import, and never touched again. It also silences those notes
  for the host application's own use of the plugins (``warnings.resetwarnings()`` removes
  it); Pillow's ``DecompressionBombWarning`` is left alone.
* **Conversion in strips.** ``convert``/``alpha_composite``/``np.asarray`` on a whole
  64 MP image each allocate another full copy (an RGBA PNG peaked at +1.67 GB); converting
  ~1 MP strips into a preallocated result keeps the peak at decoder + result. RGB (every
  colour JPEG) is copied out of PIL's 4-byte pixels by the raw encoder, one call per strip,
  and packed to 3 bytes by OpenCV: ``np.asarray(strip)`` went through ``tobytes()``'s
  64 KB chunks and a join, and made the 12 MP conversion twice as slow.
* **DCT-domain downscaling** (``scale``, JPEG only): libjpeg can decode at 1/2, 1/4 or
  1/8 by keeping only the low-frequency DCT coefficients, for a fraction of the full
  decode's time and memory. :mod:`pillsnap_sdk.photo` decides how coarse the pipeline can
  go; every limit above is checked on the full-size header first, whatever the scale.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from .errors import InvalidImageError
from .headerscan import check_jpeg_walk, check_structure, walk_jpeg
from .imagelimits import MAX_JPEG_SCANS, check_decode_cost, hard_pixel_limit

__all__ = [
    "ALLOWED_FORMATS",
    "JPEG_SCALES",
    "PIL_NOISE_MODULES",
    "check_size",
    "decode_bytes",
    "decode_opened",
    "exif_orientation",
    "is_jpeg",
    "open_checked",
    "pil_to_rgb",
]

RGBImage = npt.NDArray[np.uint8]

#: The only formats the SDK decodes (PIL format ids). MPO (multi-picture JPEG from some
#: cameras) is opened by the JPEG plugin.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
_PLUGINS = (  # imported for their registration in Image.OPEN; named to keep them loaded
    JpegImagePlugin,
    PngImagePlugin,
    WebPImagePlugin,
    BmpImagePlugin,
    TiffImagePlugin,
    GifImagePlugin,
)
_PIL_FORMATS_OK = (*ALLOWED_FORMATS, "MPO")
#: The DCT-domain scales libjpeg decodes at (1 = full size), finest first.
JPEG_SCALES = (1, 2, 4, 8)
_ALPHA_BACKGROUND = (255, 255, 255, 255)
_STRIP_PIXELS = 1 << 18  # 256 K pixels per conversion strip: a few MB of temporaries
# A complete Huffman-coded JPEG spends at least 1 bit per 8x8 block per component;
# half of that for grey is pixels / 1024 bytes. Smaller files are truncated.
_JPEG_MIN_PIXELS_PER_BYTE = 1024
#: Pillow modules whose ``UserWarning`` s (all notes about corrupt metadata in the file
#: being parsed) are ignored process-wide from import on; see the module docstring.
PIL_NOISE_MODULES = r"PIL\.(TiffImagePlugin|JpegImagePlugin|PngImagePlugin)\Z"
warnings.filterwarnings("ignore", category=UserWarning, module=PIL_NOISE_MODULES)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def check_size(width: int, height: int, max_pixels: int, source: str) -> None:
    """The caller's pixel limit and PIL's hard net, from dimensions alone."""
    if width < 1 or height < 1:
        raise InvalidImageError(f"{source}: image has no pixels ({width}x{height})")
    pixels = width * height
    if pixels > hard_pixel_limit():
        raise InvalidImageError(
            f"{source}: image header claims too many pixels ({width}x{height} = "
            f"{pixels:,}); downscale the photo"
        )
    if pixels > max_pixels:
        raise InvalidImageError(
            f"{source}: {width}x{height} = {pixels:,} pixels exceeds the limit of "
            f"{max_pixels:,}; downscale the photo or raise max_image_pixels"
        )


def open_checked(data: bytes, max_pixels: int, source: str) -> Image.Image:
    """Open ``data`` with an allowed plugin and check every header limit; nothing decoded.

    The caller owns the returned image (``close`` it). Its ``size`` is the stored size,
    before EXIF orientation.
    """
    img = _open(data, max_pixels, source)
    try:
        check_size(img.width, img.height, max_pixels, source)
        if is_jpeg(img):
            _check_jpeg(data, img, source)
        check_decode_cost(img, len(data), max_pixels, source)
    except BaseException:
        img.close()
        raise
    return img


def is_jpeg(img: Image.Image) -> bool:
    """JPEG (or MPO, a JPEG with more pictures after it): DCT scaling applies."""
    return img.format in ("JPEG", "MPO")


def exif_orientation(img: Image.Image) -> int:
    """EXIF orientation tag (1-8); 1 when absent or unreadable."""
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block is not worth refusing the photo for
        return 1


def decode_bytes(data: bytes, max_pixels: int, source: str, *, scale: int = 1) -> RGBImage:
    """Decode an encoded photo of an allowed format, refusing from the header first.

    ``scale`` (1, 2, 4 or 8) decodes a JPEG at that fraction of its size in the DCT
    domain (``ceil(size / scale)`` pixels per side); other formats ignore it. Limits are
    always checked on the full-size header.
    """
    return decode_opened(open_checked(data, max_pixels, source), source, scale=scale)[0]


def decode_opened(img: Image.Image, source: str, *, scale: int = 1) -> tuple[RGBImage, int]:
    """Decode an image from :func:`open_checked` (and close it): ``(rgb, scale used)``.

    The scale used is 1 for anything but a JPEG whose decoder accepted ``scale``.
    """
    if scale not in JPEG_SCALES:
        img.close()
        raise ValueError(f"scale must be one of {JPEG_SCALES}, got {scale!r}")
    used = 1
    try:
        if scale > 1 and is_jpeg(img):
            w, h = img.size
            if img.draft(None, (max(1, w // scale), max(1, h // scale))) is not None:
                used = _draft_scale(w, h, img.size, source)
        rgb, orientation = _load_and_convert(img, source)
    finally:
        img.close()  # frees PIL's copy before the orientation copy is made
    del img
    return _orient(rgb, orientation, source), used


def _draft_scale(w: int, h: int, drafted: tuple[int, int], source: str) -> int:
    """The DCT scale Pillow's ``draft`` really chose, read from the size it set.

    Why not the scale asked for: ``draft`` picks one factor for both sides, limited by the
    *short* side, so a 4000x3 JPEG asked for 1/4 decodes at 1/2. Boxes are mapped back to
    the photo with this number: a wrong one puts every box and crop in the wrong place.
    """
    for s in JPEG_SCALES:
        if drafted == (-(-w // s), -(-h // s)):
            return s
    raise InvalidImageError(
        f"{source}: the JPEG decoder reduced {w}x{h} to {drafted[0]}x{drafted[1]}, "
        "not a whole DCT scale; re-encode the photo"
    )


def pil_to_rgb(img: Image.Image, max_pixels: int, source: str) -> RGBImage:
    """Convert a caller's PIL image (loaded or lazily opened) under the same limits."""
    if img.format is not None and img.format not in _PIL_FORMATS_OK:
        raise InvalidImageError(
            f"{source}: format {img.format} is not accepted (allowed: "
            f"{', '.join(ALLOWED_FORMATS)}); convert it first, e.g. img.convert('RGB')"
        )
    check_size(img.width, img.height, max_pixels, source)
    check_decode_cost(img, 0, max_pixels, source)
    try:
        if getattr(img, "is_animated", False) and img.tell() != 0:
            img.seek(0)  # animated GIF/WebP/APNG left on a later frame: the photo is frame 0
    except Exception as exc:
        raise InvalidImageError(f"{source}: cannot select the first frame: {exc}") from exc
    rgb, orientation = _load_and_convert(img, source)
    return _orient(rgb, orientation, source)


def _open(data: bytes, max_pixels: int, source: str) -> Image.Image:
    """Instantiate the first allowed plugin that accepts the header (``Image.open``'s core,
    restricted to :data:`ALLOWED_FORMATS` and without its global-warning bomb check),
    once :func:`.headerscan.check_structure` found nothing pathological."""
    check_structure(data, max_pixels, source)
    prefix = data[:16]
    for fmt in ALLOWED_FORMATS:
        factory, accept = Image.OPEN[fmt]
        verdict = accept(prefix) if accept else True
        if not verdict or isinstance(verdict, str):
            continue
        try:
            return factory(io.BytesIO(data), "")
        except Exception as exc:  # SyntaxError, struct.error, OSError... for hostile headers
            raise InvalidImageError(f"{source}: cannot parse image header ({fmt}): {exc}") from exc
    raise InvalidImageError(
        f"{source}: not a decodable image; send a JPEG, PNG, WebP, BMP, TIFF or GIF photo"
    )


def _check_jpeg(data: bytes, img: Image.Image, source: str) -> None:
    pixels = img.width * img.height
    if len(data) * _JPEG_MIN_PIXELS_PER_BYTE < pixels:
        raise InvalidImageError(
            f"{source}: image data is corrupt or truncated ({len(data):,} bytes cannot "
            f"hold a {img.width}x{img.height} JPEG); retake or re-upload"
        )
    walk = walk_jpeg(data, max_scans=MAX_JPEG_SCANS)  # whole file: bounded by its segments
    check_jpeg_walk(walk, source)
    if walk.scans > MAX_JPEG_SCANS:
        raise InvalidImageError(
            f"{source}: JPEG has more than {MAX_JPEG_SCANS} scans (cameras write 1-10); "
            "refused to bound decoding time: re-save it as a baseline JPEG"
        )


def _load_and_convert(img: Image.Image, source: str) -> tuple[RGBImage, int]:
    try:
        img.load()
    except Exception as exc:  # truncated / corrupt payloads: OSError, SyntaxError, ...
        raise InvalidImageError(
            f"{source}: image data is corrupt or truncated ({exc}); retake or re-upload"
        ) from exc
    orientation = exif_orientation(img)
    try:
        return _to_rgb(img), orientation
    except InvalidImageError:
        raise
    except Exception as exc:
        raise InvalidImageError(f"{source}: cannot convert image to RGB: {exc}") from exc


def _orient(rgb: RGBImage, orientation: int, source: str) -> RGBImage:
    """EXIF orientation applied with numpy on the 3-byte result (PIL would copy 4-byte)."""
    op = _ORIENT.get(orientation)
    out = rgb if op is None else op(rgb)
    return np.ascontiguousarray(out, dtype=np.uint8)


def _strips(height: int, width: int) -> range:
    return range(0, height, max(1, _STRIP_PIXELS // max(width, 1)))


def _to_rgb(img: Image.Image) -> RGBImage:
    """Convert a loaded PIL image strip by strip into one preallocated ``HxWx3`` array."""
    w, h = img.size
    out = np.empty((h, w, 3), dtype=np.uint8)
    mode = img.mode
    step = _strips(h, w).step
    wide = mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
    scale = _wide_scale(img) if wide else 1.0
    alpha = mode in ("RGBA", "LA", "PA", "RGBa") or (mode == "P" and "transparency" in img.info)
    if mode == "RGB" and _rgb_strips(img, out, step):
        return out
    for y0 in range(0, h, step):
        strip = img.crop((0, y0, w, min(h, y0 + step)))
        if mode == "RGB":
            out[y0 : y0 + step] = np.asarray(strip, dtype=np.uint8)
        elif wide:
            grey = _wide_to_uint8(np.asarray(strip), mode, scale)
            out[y0 : y0 + step] = grey[:, :, None]
        elif mode == "La":
            out[y0 : y0 + step] = _premultiplied_grey_on_white(np.asarray(strip))[:, :, None]
        elif alpha:
            out[y0 : y0 + step] = composite_on_white(strip)
        else:  # L, 1, P, CMYK, YCbCr, LAB, HSV
            out[y0 : y0 + step] = np.asarray(strip.convert("RGB"), dtype=np.uint8)
    return out


def _rgb_strips(img: Image.Image, out: RGBImage, step: int) -> bool:
    """Copy a loaded RGB image into ``out`` strip by strip: PIL's raw encoder copies each
    strip's 4-byte pixels out in one call and OpenCV drops the fourth byte into ``out``.

    Returns False (nothing written that matters) when this Pillow lacks the encoder API,
    so the caller falls back to the portable path.
    """
    w, h = img.size
    try:
        for y0 in range(0, h, step):
            y1 = min(h, y0 + step)
            encoder = Image._getencoder("RGB", "raw", "RGBX")
            encoder.setimage(img.im, (0, y0, w, y1))
            chunks = []
            while True:
                _, done, chunk = encoder.encode(w * 4 * (y1 - y0) + 64)
                chunks.append(chunk)
                if done:
                    break
            if done < 0:
                return False
            rows = np.frombuffer(b"".join(chunks) if len(chunks) > 1 else chunks[0], np.uint8)
            cv2.cvtColor(rows.reshape(y1 - y0, w, 4), cv2.COLOR_RGBA2RGB, dst=out[y0:y1])
    except (AttributeError, TypeError, ValueError, OSError):
        return False
    return True


def composite_on_white(strip: Image.Image) -> RGBImage:
    """Alpha (RGBA, LA, PA, palette transparency) composited on white, as RGB."""
    rgba = strip.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _ALPHA_BACKGROUND)
    return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)


def _premultiplied_grey_on_white(la: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Grey with premultiplied alpha ("La"; Pillow converts it to nothing but "LA") on
    white: ``L*a/255`` is stored, so the composite is ``stored + 255 - a``, exactly,
    without unpremultiplying. Stored values above alpha (invalid) saturate to white."""
    wide = la[:, :, 0].astype(np.int16) + (255 - la[:, :, 1].astype(np.int16))
    out: npt.NDArray[np.uint8] = np.minimum(wide, 255).astype(np.uint8)
    return out


def _wide_scale(img: Image.Image) -> float:
    """The whole image's range, found strip by strip: 16/32-bit and float grey are mapped
    to 8 bits by range, not clipped, so the scale must not depend on the strip."""
    w, h = img.size
    peak = 0.0
    for y0 in _strips(h, w):
        strip = np.asarray(img.crop((0, y0, w, min(h, y0 + _strips(h, w).step))))
        if img.mode == "F":
            strip = np.nan_to_num(strip.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        peak = max(peak, float(strip.max(initial=0)))
    if img.mode == "F":
        return 255.0 if peak <= 1.0 else 1.0
    if img.mode == "I" and peak <= 255:
        return 1.0  # 32-bit grey holding 8-bit values: used as is
    return 255.0 / 65535.0


def _wide_to_uint8(arr: npt.NDArray[Any], mode: str, scale: float) -> npt.NDArray[np.uint8]:
    if mode == "F":
        values = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        out: npt.NDArray[np.uint8] = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        return out
    wide = arr.astype(np.int64)
    if scale == 1.0:
        return np.clip(wide, 0, 255).astype(np.uint8)
    return np.clip((wide * 255 + 32767) // 65535, 0, 255).astype(np.uint8)
