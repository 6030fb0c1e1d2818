"""Turn whatever a caller hands us into one RGB ``uint8`` array, or raise InvalidImageError.

Why one function: the classifier was trained on RGB pixels as a camera shows them, so every
input kind (path, encoded bytes, binary file object, numpy, PIL) must end in the *same*
pixels. Files honour EXIF orientation (phones store portrait photos rotated), exotic modes
(16-bit, palette, CMYK, alpha) are reduced deterministically, and every limit (file size,
pixels, memory budget, JPEG scans) is checked before any pixel is decoded
(:mod:`pillsnap_sdk.decode`), so a 40 KB "decompression bomb" cannot allocate gigabytes.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image

from .decode import check_size, composite_on_white, decode_bytes, pil_to_rgb
from .errors import InvalidArgumentError, InvalidImageError
from .imagelimits import byte_budget

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_LIMIT",
    "ChannelOrder",
    "ImageInput",
    "RGBImage",
    "check_channel_order",
    "check_max_pixels",
    "from_decoded",
    "load_image",
    "max_file_bytes",
    "read_encoded",
]


class BinaryReadable(Protocol):
    """Anything with ``read(n) -> bytes``: ``BytesIO``, ``open(p, "rb")``, ``UploadFile.file``."""

    def read(self, size: int = ..., /) -> bytes: ...


RGBImage: TypeAlias = npt.NDArray[np.uint8]
ImageInput: TypeAlias = (
    str
    | os.PathLike[str]
    | bytes
    | bytearray
    | memoryview
    | BinaryReadable
    | npt.NDArray[Any]
    | Image.Image
)
ChannelOrder = Literal["RGB", "BGR"]

#: Default pixel limit (width * height): 64 MP covers every phone camera (a 200 MP sensor
#: writes 50 MP JPEGs by default). With it the decode memory budget is 8 bytes/pixel
#: (512 MB); see docs/reliability.md for the measured peaks.
DEFAULT_MAX_PIXELS = 64_000_000
#: Largest ``max_image_pixels`` accepted: 10**12 (a 1,000,000 x 1,000,000 image, 15,600x
#: the default). Larger values are mistakes (``sys.maxsize`` meant as "unlimited"), and
#: the limits derived from it (8 bytes/pixel decode budget, file cap) stay far inside the
#: C integers I/O takes (``2**61`` overflowed them). Files are read in bounded chunks, so a
#: large limit allocates nothing by itself; PIL's own net
#: (:func:`~.imagelimits.hard_pixel_limit`, 179 MP unless ``Image.MAX_IMAGE_PIXELS`` is
#: raised) still applies below it.
MAX_PIXELS_LIMIT = 10**12
_STRIP_ROWS_PIXELS = 1 << 18
# Reads ask for at most this much, or for as much as was already read (so O(log n) calls):
# never for the whole cap, which read(n) would preallocate (MemoryError at a large cap).
_READ_CHUNK = 1 << 20
# A str input starting with a URL scheme ("https://", "ftp://", "file://"...): nothing is
# ever downloaded, and Path() would mangle it into "https:/host/x.jpg".
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
# Signatures of the allowed formats that are printable text (GIF8, BM, II, MM, RIFF), so
# the "bytes hold a path" hint never fires for something that might be an image.
_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM", b"II", b"MM", b"RIFF")
_PATHISH = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]+://|[~/\\.]|[A-Za-z]:[/\\])|.*\.[A-Za-z]{3,4}$")


def check_max_pixels(value: object) -> int:
    """``max_image_pixels`` must be a positive ``int`` (NaN or a float would disable it)
    no larger than :data:`MAX_PIXELS_LIMIT`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(
            f"max_image_pixels must be a positive int (pixels, e.g. 64_000_000), got {value!r}"
        )
    if value > MAX_PIXELS_LIMIT:
        raise InvalidArgumentError(
            f"max_image_pixels must be at most {MAX_PIXELS_LIMIT:,} (10**12), got {value:,}; "
            f"photos are far smaller (default {DEFAULT_MAX_PIXELS:,})"
        )
    return value


def max_file_bytes(max_pixels: int) -> int:
    """Largest encoded file read for ``max_pixels``: 4 bytes/pixel (an uncompressed RGBA
    BMP/TIFF at the limit) plus 1 MiB of headers, and never above the memory budget."""
    return min(4 * max_pixels + (1 << 20), byte_budget(max_pixels))


def load_image(
    image: ImageInput,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    channel_order: ChannelOrder = "RGB",
) -> RGBImage:
    """Return a C-contiguous ``HxWx3`` RGB ``uint8`` array for any supported input.

    Accepts a path (``str``/``PathLike``), encoded bytes, a binary file object (anything
    whose ``read()`` returns bytes), a numpy ``uint8`` array (``HxWx3``, ``HxWx4``, ``HxW``
    or ``HxWx1``; ``channel_order="BGR"`` for arrays from OpenCV) or a PIL image.
    Raises :class:`InvalidImageError` for anything else, with a message that says why.
    A ``str`` starting with a URL scheme (``https://``, ``ftp://``, ``file://``...) is
    refused, not fetched: download the photo and pass the file. File objects are read
    to EOF (pipes and unbuffered sockets return short reads).
    """
    check_max_pixels(max_pixels)
    check_channel_order(channel_order)
    rgb = from_decoded(image, max_pixels, channel_order)
    if rgb is not None:
        return rgb
    data, source = read_encoded(image, max_pixels)
    return decode_bytes(data, max_pixels, source)


def check_channel_order(value: object) -> ChannelOrder:
    """``"RGB"`` or ``"BGR"``; anything else is an InvalidArgumentError."""
    if value == "RGB" or value == "BGR":
        return value
    raise InvalidArgumentError(
        f"channel_order must be 'RGB' or 'BGR' (OpenCV arrays), got {value!r}"
    )


def read_encoded(image: object, max_pixels: int) -> tuple[bytes, str]:
    """The encoded file behind a path, bytes-like or binary file object input, read under
    the size cap, and a name for messages. Arrays and PIL images are not encoded: callers
    handle them first; any other type is an InvalidImageError."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data, source = _buffer_bytes(image, max_pixels), "bytes"
    elif isinstance(image, (str, os.PathLike)):
        path = _as_path(image)
        data, source = _read_path(path, max_pixels), str(path)[:200]
    elif callable(getattr(image, "read", None)):
        data, source = _read_stream(image, max_pixels), "file object"
    else:
        raise InvalidImageError(
            f"unsupported image type {type(image).__name__}: pass a path, encoded bytes, a "
            "binary file object, a uint8 numpy array (HxWx3 RGB or HxW grey) or a PIL image"
        )
    if not data:
        raise InvalidImageError(f"{source} is empty (0 bytes): retake or re-upload the photo")
    return data, source


def from_decoded(image: object, max_pixels: int, channel_order: ChannelOrder) -> RGBImage | None:
    """An array or PIL image input as RGB; None for encoded inputs (see read_encoded)."""
    if isinstance(image, np.ndarray):
        return _from_array(image, max_pixels, channel_order)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image, max_pixels, source="PIL image")
    return None


def _too_big(source: str, size: int, cap: int) -> InvalidImageError:
    return InvalidImageError(
        f"{source}: {size:,} bytes is larger than any photo under the pixel limit "
        f"({cap:,} bytes); downscale or recompress it"
    )


def _buffer_bytes(image: bytes | bytearray | memoryview, max_pixels: int) -> bytes:
    try:
        size = image.nbytes if isinstance(image, memoryview) else len(image)
        cap = max_file_bytes(max_pixels)
        if size > cap:
            raise _too_big("bytes", size, cap)
        data = bytes(image)
    except ValueError as exc:  # a released memoryview, or one that is not C-contiguous
        raise InvalidImageError(f"unusable memoryview: {exc}; pass bytes") from exc
    if not data:
        raise InvalidImageError("empty bytes: pass the encoded file content (JPEG/PNG/...)")
    _refuse_path_bytes(data)
    return data


def _refuse_path_bytes(data: bytes) -> None:
    """Bytes are the encoded file itself; short printable bytes that look like a path or
    URL (``b"photos/x.jpg"``) were almost surely meant as one: say so, instead of the
    decoder's plain "not a decodable image"."""
    if len(data) > 4096 or data.startswith(_IMAGE_MAGIC):
        return
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return
    if text.isprintable() and _PATHISH.match(text):
        raise InvalidImageError(
            f"bytes: not a decodable image: bytes are read as the encoded image file, and "
            f"these look like a path or URL ({data[:80]!r}); pass a path as str or "
            "pathlib.Path (or the file's content)"
        )


def _as_path(image: str | os.PathLike[str]) -> Path:
    try:
        raw = os.fspath(image)
    except Exception as exc:  # a PathLike whose __fspath__ raises
        raise InvalidImageError(f"cannot use {type(image).__name__} as a path: {exc}") from exc
    if raw == "":
        raise InvalidImageError("no such image file: '' (empty path)")
    if not isinstance(raw, str):
        raise InvalidImageError(
            f"image path must be text, got {type(raw).__name__} from {type(image).__name__}; "
            "decode it first (os.fsdecode)"
        )
    if _URL.match(raw):
        raise InvalidImageError(
            f"{raw[:200]!r} is a URL: URLs are not supported (the SDK never downloads); "
            "download the photo first and pass the local file path, its bytes or a file "
            "object (for file:// pass the path itself)"
        )
    return Path(raw)


def _read_path(path: Path, max_pixels: int) -> bytes:
    """Stat first (regular file, size cap), then read at most the cap: a FIFO, a device or
    a 10 GB file is refused without blocking or reading it."""
    shown = str(path)[:200]
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InvalidImageError(f"no such image file: {shown} (check the path)") from None
    except (OSError, ValueError) as exc:  # over-long names, NUL bytes, EACCES on a parent
        if isinstance(exc, ValueError) and "null" in str(exc).lower():
            raise InvalidImageError(f"no such image file: {shown!r} (NUL in path)") from exc
        raise InvalidImageError(f"cannot read image file {shown!r}: {exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise InvalidImageError(f"{shown} is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidImageError(
            f"{shown} is not a regular file (a pipe, socket or device); save the photo first"
        )
    cap = max_file_bytes(max_pixels)
    if st.st_size > cap:
        raise _too_big(shown, st.st_size, cap)
    try:
        with path.open("rb") as fh:  # st_size + 1 first: one read, then EOF (or growth)
            return _read_capped(fh.read, cap, shown, first=st.st_size + 1, until_eof=True)
    except InvalidImageError:  # grew past the cap after stat (a ValueError too)
        raise
    except (OSError, ValueError) as exc:
        raise InvalidImageError(f"cannot read image file {shown!r}: {exc}") from exc


def _read_stream(stream: Any, max_pixels: int) -> bytes:
    """Read a caller's binary file object, at most the size cap, without closing it."""
    if isinstance(stream, io.TextIOBase) or "b" not in str(getattr(stream, "mode", "b")):
        raise InvalidImageError(
            "file object is open in text mode; open the photo with open(path, 'rb')"
        )
    cap = max_file_bytes(max_pixels)
    until_eof = isinstance(stream, io.IOBase)
    try:
        return _read_capped(stream.read, cap, "file object", _READ_CHUNK, until_eof)
    except (InvalidImageError, MemoryError):
        raise
    except Exception as exc:
        raise InvalidImageError(f"file object: cannot read: {exc}") from exc


def _read_capped(
    read: Callable[[int], object], cap: int, source: str, first: int, until_eof: bool
) -> bytes:
    """Read to EOF in bounded requests, refusing more than ``cap`` bytes.

    ``until_eof``: io objects (files, pipes, sockets) may return short reads before EOF
    (an unbuffered pipe returns what the writer has sent so far), so only ``b""`` ends
    them. Other objects with a ``read`` are trusted to return less than asked only at
    EOF, and one that ignores the size and returns everything at once is taken at its
    word, as before.
    """
    chunks: list[bytes] = []
    total, want = 0, first
    while True:
        asked = max(1, min(want, cap + 1 - total))
        chunk = read(asked)
        if isinstance(chunk, (bytearray, memoryview)):
            chunk = bytes(chunk)
        if chunk is None:
            raise InvalidImageError(
                f"{source}: read() returned None (a non-blocking stream with no data ready); "
                "pass a blocking stream, or read the photo yourself and pass its bytes"
            )
        if not isinstance(chunk, bytes):
            raise InvalidImageError(
                f"{source}: read() returned {type(chunk).__name__}, not bytes; "
                "open the photo in binary mode ('rb')"
            )
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            raise _too_big(source, total, cap)
        if not until_eof and len(chunk) != asked:
            break
        want = max(_READ_CHUNK, total)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _from_array(arr: npt.NDArray[Any], max_pixels: int, order: ChannelOrder) -> RGBImage:
    if type(arr) is not np.ndarray:  # np.matrix, masked arrays, memmaps: plain view
        arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise InvalidImageError(
            f"numpy image must have dtype uint8, got {arr.dtype}; "
            "convert with np.clip(a, 0, 255).astype(np.uint8) (scale floats by 255 first)"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        check_size(arr.shape[1], arr.shape[0], max_pixels, "numpy image")
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        check_size(arr.shape[1], arr.shape[0], max_pixels, "numpy image")
        if order == "BGR":
            arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]] if arr.shape[2] == 4 else arr[:, :, ::-1]
        if arr.shape[2] == 4:
            return _rgba_array_to_rgb(arr)
        return np.ascontiguousarray(arr)
    raise InvalidImageError(
        f"numpy image must be HxWx3 (RGB), HxWx4 (RGBA) or HxW (grey), got shape {arr.shape}"
    )


def _rgba_array_to_rgb(arr: npt.NDArray[np.uint8]) -> RGBImage:
    """Composite on white strip by strip: no full-size RGBA copy (same pixels as PIL)."""
    h, w = arr.shape[:2]
    out = np.empty((h, w, 3), dtype=np.uint8)
    step = max(1, _STRIP_ROWS_PIXELS // max(w, 1))
    for y0 in range(0, h, step):
        strip = Image.fromarray(np.ascontiguousarray(arr[y0 : y0 + step]), "RGBA")
        out[y0 : y0 + step] = composite_on_white(strip)
    return out
