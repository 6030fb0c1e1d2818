"""What decoding an image will cost, decided from its header before a pixel is decoded.

Why a byte budget and not just a pixel count: the same 64 MP costs 64 MB as a grey PNG
but over 1.5 GB as RGBA once the decoder's buffer, PIL's 4-byte pixels and every
conversion copy are counted. The SDK converts in strips (see :mod:`pillsnap_sdk.decode`),
so its peak is the decoder's own allocations plus the ``HxWx3`` result; this module
estimates exactly that from the header and refuses what would not fit in
``BYTES_PER_PIXEL_BUDGET x max_pixels`` bytes. A plain RGB photo at the pixel limit fits;
formats whose decoders allocate more (progressive JPEG coefficients, WebP's decoded frame,
libtiff's strip buffer) are refused at a proportionally lower size.

It also counts JPEG scans: libjpeg re-walks the whole coefficient buffer for every scan
of a progressive file, so a 165 KB file that repeats its last scan 3,000 times burns
~18 s of CPU. Cameras write 1 (baseline) to ~10 scans (libjpeg's progressive script).
"""

from __future__ import annotations

from PIL import Image

from .errors import InvalidImageError
from .headerscan import walk_jpeg

__all__ = [
    "BYTES_PER_PIXEL_BUDGET",
    "MAX_JPEG_SCANS",
    "byte_budget",
    "check_decode_cost",
    "count_jpeg_scans",
    "hard_pixel_limit",
]

#: Bytes the SDK may allocate per allowed pixel while decoding (the memory budget is
#: ``BYTES_PER_PIXEL_BUDGET * max_image_pixels``). 8 = PIL's 4-byte RGB pixel + the 3-byte
#: result + 1 for the encoded file held in memory: a plain photo at the pixel limit fits.
BYTES_PER_PIXEL_BUDGET = 8
#: Most JPEG scans accepted. libjpeg writes 10 for a progressive colour photo, 6 for grey;
#: mozjpeg/jpegtran optimised scripts stay well under this.
MAX_JPEG_SCANS = 100

# PIL's internal storage per pixel: "1", "L", "P" use one byte, 16-bit grey two, every
# other mode (RGB included) four.
_PIL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_RESULT_BYTES = 3  # the HxWx3 uint8 result


def byte_budget(max_pixels: int) -> int:
    """Most bytes a decode may allocate under the pixel limit ``max_pixels``."""
    return BYTES_PER_PIXEL_BUDGET * max_pixels


def hard_pixel_limit() -> int:
    """PIL's own refusal threshold (2 x ``Image.MAX_IMAGE_PIXELS``), read, never changed.

    Kept as a second net whatever ``max_image_pixels`` says: above it PIL itself would not
    open the file, and the decoder's up-front allocation alone could exhaust memory.
    """
    limit = Image.MAX_IMAGE_PIXELS
    return 2 * int(limit) if limit else 2**62


def _decoder_extra(img: Image.Image, pixels: int) -> int:
    """Bytes the format's decoder allocates besides PIL's image (measured, see docs)."""
    fmt = img.format
    if fmt in ("JPEG", "MPO") and ("progressive" in img.info or "progression" in img.info):
        # Progressive: libjpeg keeps every DCT coefficient (2 bytes) of every component.
        layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * len(img.getbands())
        hmax = max(int(layer[1]) for layer in layers) or 1
        vmax = max(int(layer[2]) for layer in layers) or 1
        share = sum(int(layer[1]) * int(layer[2]) for layer in layers) / (hmax * vmax)
        return int(2 * share * pixels) + 1
    if fmt == "WEBP":
        # libwebp decodes the frame into its own RGBA buffer and Pillow copies it into a
        # bytes object first: measured +706 MB (15.3 B/px) at 46 MP, so 9 B/px on top.
        return 9 * pixels
    if fmt == "TIFF":
        # libtiff may read a whole-image strip (or RGBA raster) first, and inflates one
        # whole tile whatever the image's size: a 10x10 image in a 12288x12288 tile
        # allocated 430 MB, so a tile counts at its own area.
        return 4 * max(pixels, _tiff_tile_pixels(img))
    return 0


def _tiff_tile_pixels(img: Image.Image) -> int:
    """Pixels of one TIFF tile (TileWidth x TileLength tags), 0 for a striped TIFF."""
    tags = getattr(img, "tag_v2", None)
    try:
        tw, th = (int(tags.get(322, 0) or 0), int(tags.get(323, 0) or 0)) if tags else (0, 0)
    except (TypeError, ValueError):  # a malformed tag: the decoder refuses it later
        return 0
    return max(0, tw) * max(0, th)


def estimated_peak(img: Image.Image, encoded_bytes: int) -> int:
    """Bytes decoding ``img`` and converting it to ``HxWx3`` uint8 will allocate."""
    pixels = img.width * img.height
    per_pixel = _PIL_BYTES.get(img.mode, 4) + _RESULT_BYTES
    return encoded_bytes + per_pixel * pixels + _decoder_extra(img, pixels)


def check_decode_cost(img: Image.Image, encoded_bytes: int, max_pixels: int, source: str) -> None:
    """Refuse a header whose decode would exceed the memory budget."""
    need = estimated_peak(img, encoded_bytes)
    budget = byte_budget(max_pixels)
    if need > budget:
        raise InvalidImageError(
            f"{source}: decoding this {img.width}x{img.height} {img.format or ''} "
            f"{img.mode} image needs ~{need / 1e6:,.0f} MB, over the memory budget of "
            f"{budget / 1e6:,.0f} MB ({BYTES_PER_PIXEL_BUDGET} bytes x max_image_pixels "
            f"{max_pixels:,}); send a smaller or baseline RGB JPEG/PNG photo"
        )


def count_jpeg_scans(data: bytes | memoryview, stop_after: int = MAX_JPEG_SCANS) -> int:
    """Number of SOS (start-of-scan) markers in a JPEG, counting at most ``stop_after + 1``.

    Walks the marker segments by their lengths (so an EXIF thumbnail inside APP1 is
    skipped, not counted) and jumps over entropy-coded data and junk with C-speed
    searches (:func:`.headerscan.walk_jpeg`), so a 64 MB file is scanned in milliseconds.
    """
    return walk_jpeg(data, max_scans=stop_after).scans
