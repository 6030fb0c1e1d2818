"""A cheap walk of a file's container structure, before Pillow parses a byte of it.

Why: Pillow's JPEG, PNG and GIF header parsers are pure Python and handle one marker,
chunk, sub-block or junk byte per loop iteration, keeping a Python object for each. A
file made of millions of tiny structures therefore costs CPU and memory in proportion to
its size *before* any SDK limit is checked: a 20 MB GIF comment of 1-byte sub-blocks
peaked at +900 MB, 4-byte JPEG APP markers cost ~25 bytes of memory and 0.6 s of CPU per
MB, empty PNG chunks 0.15-0.4 s per MB. Real photos have a handful of such structures
(10-20 JPEG APP segments, a few dozen PNG chunks plus one IDAT per 8-64 KB), so each walk
here stops, and the file is refused, as soon as a generous cap is passed. Every loop
iteration consumes one structure and skips runs of padding or junk with C-speed
``bytes.find``/regex calls, so a walk costs at most its cap in iterations, whatever the
file's size.

BMP files compressed with RLE4/RLE8 are refused too: Pillow decodes them in a Python loop
(~0.2 s of CPU per MB; an 8000x8000 RLE4 file of 528 KB took 4.4 s), and cameras and
browsers never write them.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from PIL import Image

from .errors import InvalidImageError

__all__ = [
    "MAX_GIF_BLOCKS",
    "MAX_JPEG_SEGMENTS",
    "MAX_PADDING_BYTES",
    "MAX_PNG_SMALL_CHUNKS",
    "JpegWalk",
    "check_jpeg_walk",
    "check_structure",
    "walk_jpeg",
]

#: Most JPEG marker segments (APPn, DQT, DHT, SOS, ...) in one file. A phone photo has
#: ~10-20; extended XMP (depth maps, up to ~10 MB in 64 KB segments) adds a few hundred.
MAX_JPEG_SEGMENTS = 4096
#: Most padding/junk bytes between JPEG header segments, or between GIF blocks before the
#: first image: Pillow steps over them one byte per Python loop iteration.
MAX_PADDING_BYTES = 64 * 1024
#: Most PNG chunks shorter than :data:`_PNG_SMALL` bytes, IDATs included. Real files have
#: a few dozen (text, colour, one short last IDAT); longer chunks are limited by the
#: file's size, each costing Pillow about what its bytes cost.
MAX_PNG_SMALL_CHUNKS = 4096
#: Most GIF extension blocks plus data sub-blocks before the first image: 64 K x 255 bytes
#: holds a 16 MB ICC profile or comment; a real GIF has a few (or one per 255 bytes).
MAX_GIF_BLOCKS = 65_536

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SMALL = 1024
# Markers Pillow's JPEG header loop reads without a length field (its MARKER table with no
# handler): JPG, RST0-7, SOI, EOI, JPG0-13. Below 0xC0 (but 0x00) it stops with an error.
_JPEG_BARE_HEADER = frozenset([0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)])
# After the first scan libjpeg reads RST0-7, SOI and TEM without a length field.
_JPEG_BARE_SCAN = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])
# A marker inside entropy-coded JPEG data: 0xFF followed by anything but a stuffed zero,
# a restart marker (D0-D7) or fill (another 0xFF).
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_FILL = re.compile(rb"\xff+")
_GIF_BLOCK = re.compile(rb"[!,;]")
_BMP_INFO_HEADERS = (40, 52, 56, 64, 108, 124)  # header sizes with a compression field
_BMP_RLE = {1: "RLE8", 2: "RLE4"}


class JpegWalk(NamedTuple):
    """What a walk over a JPEG's marker segments found (see :func:`walk_jpeg`)."""

    scans: int  # SOS markers seen
    segments: int  # marker segments (and junk runs) walked, the first SOS's included
    padding: int  # fill/junk bytes between segments before the first SOS
    capped: bool  # stopped early: more than MAX_JPEG_SEGMENTS segments


def check_structure(data: bytes, max_pixels: int, source: str) -> None:
    """Refuse a JPEG, PNG, GIF or BMP whose structure would make Pillow's header parser
    (or its Python RLE decoder) spend CPU or memory in proportion to the file's size.

    Other formats, and structures a walk does not understand, are left to the decoder:
    this only refuses what it has counted.
    """
    if data.startswith(b"\xff\xd8\xff"):
        _check_jpeg(data, source)
    elif data.startswith(_PNG_SIGNATURE):
        _check_png(data, source)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        _check_gif(data, max_pixels, source)
    elif data.startswith(b"BM"):
        _check_bmp(data, source)


def walk_jpeg(data: bytes | memoryview, max_scans: int | None = None) -> JpegWalk:
    """Walk a JPEG's marker segments by their lengths, from SOI to EOI.

    Up to the first SOS it mirrors Pillow's header loop (which goes on past an early EOI
    and skips junk); after it, entropy-coded data is jumped over with a regex up to the
    next marker, as libjpeg does. Stops after ``max_scans + 1`` scans if given, and after
    :data:`MAX_JPEG_SEGMENTS` + 1 segments (``capped``), so it costs at most that many
    iterations.
    """
    buf = bytes(data) if isinstance(data, memoryview) else data
    pos, end = 2, len(buf)
    scans = segments = padding = 0
    while pos < end:
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            return JpegWalk(scans, segments, padding, True)
        if buf[pos] != 0xFF:  # junk where a marker belongs: skipped up to the next 0xFF
            nxt = buf.find(b"\xff", pos)
            nxt = end if nxt < 0 else nxt
            if scans == 0:
                padding += nxt - pos
            pos = nxt
            continue
        fill = _FILL.match(buf, pos)
        run_end = fill.end() if fill else pos + 1
        if scans == 0:
            padding += run_end - pos - 1
        if run_end >= end:
            break
        marker, pos = buf[run_end], run_end + 1
        if marker == 0x00:  # an escaped 0xFF outside a scan: junk
            padding += 2 if scans == 0 else 0
            continue
        if marker == 0xD9 and scans:  # EOI ends the image (Pillow reads on before a scan)
            break
        if marker in (_JPEG_BARE_SCAN if scans else _JPEG_BARE_HEADER):
            continue
        if marker < 0xC0 and not scans:
            break  # Pillow stops with "no marker found"
        if pos + 2 > end:
            break
        pos += (buf[pos] << 8) | buf[pos + 1]
        if marker == 0xDA:  # SOS: header, then entropy-coded data up to the next marker
            scans += 1
            if max_scans is not None and scans > max_scans:
                break  # counted enough: no need to search this scan's data for its end
            found = _JPEG_MARKER.search(buf, pos)
            pos = end if found is None else found.start()
    return JpegWalk(scans, segments, padding, False)


def check_jpeg_walk(walk: JpegWalk, source: str) -> None:
    """Refuse a walk that passed :data:`MAX_JPEG_SEGMENTS` (the SDK's scan count walks the
    whole file after Pillow has parsed the header: see :func:`.decode.open_checked`)."""
    if walk.capped:
        raise InvalidImageError(
            f"{source}: JPEG has more than {MAX_JPEG_SEGMENTS:,} marker segments (cameras "
            "write a few dozen); refused to bound parsing time: re-save the photo"
        )


def _check_jpeg(data: bytes, source: str) -> None:
    """Pillow's header loop stops at the first SOS: walk up to there."""
    walk = walk_jpeg(data, max_scans=0)
    check_jpeg_walk(walk, source)
    if walk.padding > MAX_PADDING_BYTES:
        raise InvalidImageError(
            f"{source}: JPEG header has {walk.padding:,} bytes of padding or junk between "
            f"its segments (at most {MAX_PADDING_BYTES:,} accepted); re-save the photo"
        )


def _check_png(data: bytes, source: str) -> None:
    """Count chunks up to IEND (Pillow walks them all: before IDAT when opening, after it
    in ``load_end``); refuse more than :data:`MAX_PNG_SMALL_CHUNKS` short ones."""
    pos, end, small = len(_PNG_SIGNATURE), len(data), 0
    while pos + 8 <= end:
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length < _PNG_SMALL:
            small += 1
            if small > MAX_PNG_SMALL_CHUNKS:
                raise InvalidImageError(
                    f"{source}: PNG has more than {MAX_PNG_SMALL_CHUNKS:,} chunks shorter "
                    f"than {_PNG_SMALL} bytes (encoders write a few dozen); refused to "
                    "bound parsing time: re-save the photo"
                )
        if ctype == b"IEND" or length > 0x7FFFFFFF:  # the end, or a header Pillow refuses
            return
        pos += 12 + length


def _check_gif(data: bytes, max_pixels: int, source: str) -> None:
    """Walk the blocks before the first image as Pillow's ``_seek(0)`` does: extensions
    with their sub-blocks one at a time, junk one byte at a time. Also refuse a first frame
    that outgrows the logical screen past PIL's threshold, which would make Pillow warn
    through the process-wide warnings machinery (or raise) from inside ``open``."""
    if len(data) < 13:
        return
    screen_w, screen_h = struct.unpack_from("<HH", data, 6)
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    end, blocks, padding = len(data), 0, 0
    while pos < end:
        if blocks > MAX_GIF_BLOCKS:
            raise InvalidImageError(
                f"{source}: GIF has more than {MAX_GIF_BLOCKS:,} extension blocks and "
                "sub-blocks before its first image; refused to bound parsing time and "
                "memory: re-save the image as PNG or JPEG"
            )
        if padding > MAX_PADDING_BYTES:
            raise InvalidImageError(
                f"{source}: GIF has {padding:,} junk bytes before its first image (at most "
                f"{MAX_PADDING_BYTES:,} accepted); re-save the image as PNG or JPEG"
            )
        tag = data[pos]
        if tag == 0x21:  # "!": extension label, then sub-blocks up to an empty one
            pos += 2
            blocks += 1
            while pos < end and blocks <= MAX_GIF_BLOCKS:
                size = data[pos]
                pos += 1 + size
                blocks += 1
                if size == 0:
                    break
        elif tag == 0x2C:  # ",": the first image descriptor
            _check_gif_frame(data, pos, (screen_w, screen_h), max_pixels, source)
            return
        elif tag == 0x3B:  # ";": trailer
            return
        else:
            found = _GIF_BLOCK.search(data, pos)
            nxt = end if found is None else found.start()
            padding += nxt - pos
            pos = nxt


def _check_gif_frame(
    data: bytes, pos: int, screen: tuple[int, int], max_pixels: int, source: str
) -> None:
    if pos + 9 > len(data):
        return
    x0, y0, w, h = struct.unpack_from("<HHHH", data, pos + 1)
    width, height = max(screen[0], x0 + w), max(screen[1], y0 + h)
    if (width, height) == screen:
        return
    limit = Image.MAX_IMAGE_PIXELS
    if width * height > min(max_pixels, int(limit) if limit else max_pixels):
        raise InvalidImageError(
            f"{source}: GIF's first frame ({x0}+{w}, {y0}+{h}) grows its {screen[0]}x"
            f"{screen[1]} screen to {width}x{height} = {width * height:,} pixels, over the "
            "pixel limit; downscale the image"
        )


def _check_bmp(data: bytes, source: str) -> None:
    if len(data) < 34:
        return
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size not in _BMP_INFO_HEADERS:
        return
    (compression,) = struct.unpack_from("<I", data, 30)
    if compression in _BMP_RLE:
        raise InvalidImageError(
            f"{source}: unsupported BMP compression ({_BMP_RLE[compression]}): its decoder "
            "is too slow to bound; re-save the image as PNG, JPEG or uncompressed BMP"
        )
