"""Hardening III, decode: container structure walked before Pillow parses it, RLE BMPs,
bounded reads under any pixel limit, short-read streams, "La" images, URL and path-like
bytes inputs, and Pillow's corrupt-metadata warnings kept off stderr.

Why: a red team found Pillow's pure-Python header parsers spending memory and CPU per
marker, chunk or sub-block before any SDK limit (a 20 MB GIF comment of 1-byte
sub-blocks peaked at +900 MB), RLE BMPs decoded in a Python loop, ``max_image_pixels=
10**10`` raising a raw MemoryError (``read(cap + 1)`` preallocates), unbuffered pipes
refused as truncated, and hostile EXIF printing UserWarnings. Memory is measured with
tracemalloc; no test asserts a duration.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pillsnap_sdk import Identifier, InvalidArgumentError, InvalidImageError
from pillsnap_sdk.headerscan import (
    MAX_GIF_BLOCKS,
    MAX_JPEG_SEGMENTS,
    MAX_PADDING_BYTES,
    MAX_PNG_SMALL_CHUNKS,
    walk_jpeg,
)
from pillsnap_sdk.image import MAX_PIXELS_LIMIT, load_image

REPO = Path(__file__).resolve().parents[2]


def _save(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _jpeg() -> bytes:
    return _save(Image.new("RGB", (8, 8), (200, 100, 50)), "JPEG")


def _png() -> bytes:
    return _save(Image.new("RGB", (8, 8), (200, 100, 50)), "PNG")


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def _png_with(extra: bytes, *, after_idat: bool = False) -> bytes:
    png = _png()
    at = len(png) - 12 if after_idat else png.find(b"IDAT") - 4
    return png[:at] + extra + png[at:]


_GIF_HEAD = b"GIF89a" + struct.pack("<HH", 1, 1) + b"\x80\0\0" + b"\0\0\0\xff\xff\xff"
_GIF_IMAGE = b",\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;"


def _gif(before_image: bytes) -> bytes:
    return _GIF_HEAD + before_image + _GIF_IMAGE


def _app(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _rle_bmp(side: int, rle4: bool) -> bytes:
    """``side x side`` RLE4/RLE8 BMP: runs of 255 pixels, end-of-line, end-of-bitmap."""
    bpp, comp, colours = (4, 2, 16) if rle4 else (8, 1, 256)
    palette = b"".join(struct.pack("<BBBB", k, k, k, 0) for k in range(colours))
    row = b"".join(bytes([min(255, side - x), 0x12]) for x in range(0, side, 255))
    body = (row + b"\0\0") * side + b"\0\1"
    offset = 14 + 40 + len(palette)
    head = b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset)
    dib = struct.pack("<IiiHHIIiiII", 40, side, side, 1, bpp, comp, len(body), 2835, 2835, 0, 0)
    return head + dib + palette + body


def _bitfields_bmp(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    """32-bit BI_BITFIELDS BMP (BITMAPINFOHEADER + three masks), one colour."""
    masks = struct.pack("<III", 0xFF0000, 0xFF00, 0xFF)
    pixels = bytes([rgb[2], rgb[1], rgb[0], 0]) * (w * h)
    offset = 14 + 40 + len(masks)
    head = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 32, 3, len(pixels), 2835, 2835, 0, 0)
    return head + dib + masks + pixels


def _traced_peak(fn: Callable[[], object]) -> tuple[object, int]:
    """``fn()``'s outcome (result or exception) and the peak Python allocation during it."""
    tracemalloc.start()
    try:
        try:
            out: object = fn()
        except Exception as exc:
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- 1: container structure, walked before Pillow --------------------------------------------
_PATHOLOGICAL: dict[str, tuple[Callable[[], bytes], str]] = {
    "gif_comment_1byte_subblocks": (
        lambda: _gif(b"!\xfe" + b"\x01A" * 500_000 + b"\0"),
        "extension blocks",
    ),
    "gif_skipped_extension_1byte_subblocks": (
        lambda: _gif(b"!\x01" + b"\x01A" * 500_000 + b"\0"),
        "extension blocks",
    ),
    "gif_junk_before_image": (lambda: _gif(b"x" * (MAX_PADDING_BYTES + 1)), "junk bytes"),
    "jpeg_app5_markers": (
        lambda: _jpeg()[:2] + b"\xff\xe5\x00\x02" * 250_000 + _jpeg()[2:],
        "marker segments",
    ),
    "jpeg_fill_bytes": (
        lambda: _jpeg()[:2] + b"\xff" * (MAX_PADDING_BYTES + 2) + _jpeg()[2:],
        "padding",
    ),
    "jpeg_junk_between_segments": (
        lambda: _jpeg()[:2] + _app(0xE5, b"") + b"\0" * (MAX_PADDING_BYTES + 1) + _jpeg()[2:],
        "padding",
    ),
    "jpeg_markers_after_scan": (  # walked by the SDK's own scan count, after open
        lambda: _jpeg()[:-2] + b"\xff\xc4\x00\x02" * 250_000 + b"\xff\xd9",
        "marker segments",
    ),
    "png_empty_unknown_chunks": (
        lambda: _png_with(_chunk(b"zzZz", b"") * 80_000),
        "chunks shorter",
    ),
    "png_empty_idat_chunks": (lambda: _png_with(_chunk(b"IDAT", b"") * 80_000), "chunks shorter"),
    "png_private_chunks_after_idat": (
        lambda: _png_with(_chunk(b"prVt", b"x") * 80_000, after_idat=True),
        "chunks shorter",
    ),
}


@pytest.mark.parametrize("case", sorted(_PATHOLOGICAL))
def test_pathological_structure_refused_before_pillow(case: str) -> None:
    """Each was accepted after Pillow spent 25-45 bytes of memory or ~0.2-0.6 s of CPU per
    file byte on it; now refused by the walk with Python allocations under 2 MB."""
    make, fragment = _PATHOLOGICAL[case]
    data = make()
    out, peak = _traced_peak(lambda: load_image(data))
    assert isinstance(out, InvalidImageError), (case, out)
    assert fragment in str(out), (case, str(out))
    assert peak < 2 << 20, (case, peak)


def test_gif_frame_growing_past_pil_threshold_is_refused_before_pillow() -> None:
    """A 1x1 screen whose first frame claims 10000x10000 made Pillow emit its process-wide
    DecompressionBombWarning from inside open when the caller's limit allowed it."""
    frame = b",\0\0\0\0" + struct.pack("<HH", 10_000, 10_000) + b"\0\x02\x02D\x01\0;"
    with pytest.raises(InvalidImageError, match="grows its 1x1 screen"):
        load_image(_GIF_HEAD + frame, max_pixels=150_000_000)


def test_real_structures_still_decode() -> None:
    """What cameras and editors write is far inside every cap: 40 x 60 KB APP segments
    (extended XMP), a little junk and fill, 8 KB IDATs, 300 text chunks, a 1 MB comment
    in 255-byte sub-blocks, and each walk's cap exactly."""
    base = _jpeg()
    xmp = b"".join(
        _app(0xE1, b"http://ns.adobe.com/xmp/extension/\0" + b"x" * 60_000) for _ in range(40)
    )
    for jpeg in (
        base[:2] + xmp + base[2:],
        base[:2] + _app(0xE5, b"") + b"\0" * 100 + b"\xff" * 100 + base[2:],
    ):
        assert load_image(jpeg).shape == (8, 8, 3)
    noise = Image.effect_noise((600, 600), 80).convert("RGB")
    z = zlib.compress(b"".join(b"\0" + row.tobytes() for row in np.asarray(noise)), 1)
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 600, 600, 8, 2, 0, 0, 0))
    texts = b"".join(_chunk(b"tEXt", b"k%d\0value" % k) for k in range(300))
    idats = b"".join(_chunk(b"IDAT", z[k : k + 8192]) for k in range(0, len(z), 8192))
    png = b"\x89PNG\r\n\x1a\n" + ihdr + texts + idats + _chunk(b"IEND", b"")
    assert np.array_equal(load_image(png), np.asarray(noise))
    comment = b"!\xfe" + (b"\xff" + b"c" * 255) * 4000 + b"\0"
    netscape = b"!\xff\x0bNETSCAPE2.0\x03\x01\0\0\0"
    assert load_image(_gif(netscape + comment)).shape == (1, 1, 3)


def test_caps_are_exact() -> None:
    """At each cap accepted, one more refused (the walk's counting matches the docs)."""
    # IHDR, one short IDAT and IEND are short chunks already
    at_cap = _png_with(_chunk(b"zzZz", b"") * (MAX_PNG_SMALL_CHUNKS - 3))
    assert load_image(at_cap).shape == (8, 8, 3)
    with pytest.raises(InvalidImageError, match="chunks shorter"):
        load_image(_png_with(_chunk(b"zzZz", b"") * (MAX_PNG_SMALL_CHUNKS - 2)))
    base = _jpeg()
    used = walk_jpeg(base).segments  # header segments, SOS and EOI
    at_cap = base[:2] + _app(0xE5, b"") * (MAX_JPEG_SEGMENTS - used) + base[2:]
    assert not walk_jpeg(at_cap).capped
    assert load_image(at_cap).shape == (8, 8, 3)
    over = base[:2] + _app(0xE5, b"") * (MAX_JPEG_SEGMENTS - used + 1) + base[2:]
    assert walk_jpeg(over).capped
    with pytest.raises(InvalidImageError, match="marker segments"):
        load_image(over)
    # the extension counts as a block, then MAX - 2 one-byte sub-blocks and the terminator
    at_cap = _gif(b"!\xfe" + b"\x01A" * (MAX_GIF_BLOCKS - 2) + b"\0")
    assert load_image(at_cap).shape == (1, 1, 3)
    with pytest.raises(InvalidImageError, match="extension blocks"):
        load_image(_gif(b"!\xfe" + b"\x01A" * (MAX_GIF_BLOCKS - 1) + b"\0"))


# -- 2: RLE BMP ---------------------------------------------------------------------------
@pytest.mark.parametrize("rle4", [True, False], ids=["rle4", "rle8"])
def test_rle_bmp_refused(rle4: bool) -> None:
    """Pillow decodes RLE in a Python loop (8000x8000 RLE4 from 528 KB: 4.4 s)."""
    data = _rle_bmp(300, rle4)
    with pytest.raises(InvalidImageError, match="unsupported BMP compression"):
        load_image(data)


def test_uncompressed_and_bitfields_bmp_still_decode() -> None:
    plain = load_image(_save(Image.new("RGB", (40, 30), (200, 30, 30)), "BMP"))
    assert plain.shape == (30, 40, 3) and tuple(plain[5, 5]) == (200, 30, 30)
    fields = load_image(_bitfields_bmp(40, 30, (10, 120, 240)))
    assert fields.shape == (30, 40, 3) and tuple(fields[5, 5]) == (10, 120, 240)


# -- 3: max_image_pixels bound and reads that never preallocate the cap -----------------------
@pytest.mark.parametrize("bad", [MAX_PIXELS_LIMIT + 1, 10**13, 2**61, sys.maxsize], ids=repr)
def test_max_image_pixels_has_an_upper_bound(tiny_bundle: Path, bad: int) -> None:
    with pytest.raises(InvalidArgumentError, match="at most"):
        Identifier.from_bundle(tiny_bundle, max_image_pixels=bad)
    with pytest.raises(InvalidArgumentError, match="at most"):
        load_image(_jpeg(), max_pixels=bad)


def test_largest_limit_reads_in_bounded_chunks(tmp_path: Path) -> None:
    """At 10**12 pixels the file cap is 4 TB: ``read(cap + 1)`` preallocated it (raw
    MemoryError from 10**10 on). Now a file is read at its size, a stream in chunks."""
    jpeg = _save(Image.new("RGB", (64, 48), (10, 200, 30)), "JPEG")
    want = load_image(jpeg)
    path = tmp_path / "p.jpg"
    path.write_bytes(jpeg)
    out, peak = _traced_peak(lambda: load_image(path, max_pixels=MAX_PIXELS_LIMIT))
    assert isinstance(out, np.ndarray) and np.array_equal(out, want), out
    assert peak < 16 << 20, peak
    asked: list[int] = []

    class Recording(io.BytesIO):
        def read(self, n: int | None = -1, /) -> bytes:
            asked.append(-1 if n is None else n)
            return super().read(n)

    got = load_image(Recording(jpeg), max_pixels=MAX_PIXELS_LIMIT)
    assert np.array_equal(got, want)
    assert asked and max(asked) <= 1 << 20, asked


# -- 4: short reads -----------------------------------------------------------------------
class _Trickle(io.RawIOBase):
    """An unbuffered stream that returns at most 4 KB per read, as a pipe or socket does."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        chunk = self._data[self._pos : self._pos + min(len(buf), 4096)]
        buf[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def _photo() -> bytes:
    return (REPO / "examples" / "single_pill.jpg").read_bytes()


def test_short_reads_are_read_to_eof() -> None:
    data = _photo()
    want = load_image(data)
    assert np.array_equal(load_image(_Trickle(data)), want)


def test_unbuffered_pipe_and_socket(idf_nodet: Identifier) -> None:
    idf = idf_nodet
    data = _photo()
    want = idf.identify(data).model_dump(exclude={"timings_ms"})

    def feed(write: Callable[[bytes], Any], close: Callable[[], Any]) -> None:
        for k in range(0, len(data), 4096):
            write(data[k : k + 4096])
            time.sleep(0.001)
        close()

    r, w = os.pipe()
    writer = os.fdopen(w, "wb", buffering=0)
    threading.Thread(target=feed, args=(writer.write, writer.close)).start()
    with os.fdopen(r, "rb", buffering=0) as reader:
        got = idf.identify(reader).model_dump(exclude={"timings_ms"})
    assert got == want
    a, b = socket.socketpair()
    threading.Thread(target=feed, args=(b.sendall, b.close)).start()
    with a, a.makefile("rb", buffering=0) as stream:
        got = idf.identify(stream).model_dump(exclude={"timings_ms"})
    assert got == want


def test_non_blocking_stream_without_data_is_typed() -> None:
    class NotReady(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> None:
            return None  # what a non-blocking pipe or socket returns with nothing ready

    with pytest.raises(InvalidImageError, match="non-blocking"):
        load_image(NotReady())


def test_reader_ignoring_size_is_taken_at_its_word() -> None:
    """A duck-typed reader that returns everything on every call (more than asked)."""
    noise = Image.effect_noise((800, 800), 80).convert("RGB")
    data = _save(noise, "PNG")
    assert len(data) > 1 << 20

    class Everything:
        def read(self, n: int = -1) -> bytes:
            return data

    assert np.array_equal(load_image(Everything()), np.asarray(noise))


# -- 5: "La" ------------------------------------------------------------------------------
def test_premultiplied_grey_alpha_is_composited_like_la() -> None:
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    alpha = np.tile(np.arange(0, 256, 4, dtype=np.uint8)[:, None], (1, 64))
    la = Image.fromarray(np.dstack([grey, alpha]), "LA")
    want = load_image(la).astype(int)
    got = load_image(la.convert("La")).astype(int)
    assert got.shape == (64, 64, 3)
    assert np.abs(got - want).max() <= 2
    assert tuple(load_image(la.convert("La"))[0, 0]) == (255, 255, 255)  # transparent


# -- 6: URLs and path-like bytes ----------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["http://example.com/x.jpg", "https://example.com/x.jpg", "ftp://h/x.png", "file:///tmp/x.jpg"],
)
def test_url_strings_are_refused_clearly(url: str) -> None:
    with pytest.raises(InvalidImageError, match="URLs are not supported") as err:
        load_image(url)
    assert url in str(err.value)  # not mangled into "http:/example.com"


@pytest.mark.parametrize("raw", [b"/tmp/x.jpg", b"photo.png", b"C:\\photos\\a.jpg", b"~/a.jpg\n"])
def test_path_like_bytes_get_a_hint(raw: bytes) -> None:
    with pytest.raises(InvalidImageError, match="look like a path") as err:
        load_image(raw)
    assert "str or pathlib.Path" in str(err.value)


def test_other_undecodable_bytes_keep_the_plain_message() -> None:
    for raw in (b"hello world", bytes(range(1, 64)), b"GIF8junk.jpg"):
        with pytest.raises(InvalidImageError) as err:
            load_image(raw)
        assert "look like a path" not in str(err.value)


# -- 7: Pillow's warnings -----------------------------------------------------------------
_WARN_CHILD = r"""
import io, struct, sys, threading
from PIL import Image
from pillsnap_sdk.image import load_image
def exif(tag_type, count, value):
    ifd = struct.pack(">H", 1) + struct.pack(">HHI", 0x0112, tag_type, count)
    return b"Exif\0\0MM\0\x2a\0\0\0\x08" + ifd + value.ljust(4, b"\0") + b"\0\0\0\0"
files = []
for e in (exif(5, 1, struct.pack(">I", 0xFFFFFF00)), exif(3, 0x7FFFFFFF, b"\0\6")):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(buf, "JPEG", exif=e)
    files.append(buf.getvalue())
def work():
    for data in files:
        assert load_image(data).shape == (16, 16, 3)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print("decoded")
"""


def test_hostile_exif_warnings_do_not_reach_stderr() -> None:
    """Pillow printed "Truncated File Read" and "Tag data larger than file" to stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": ""}
    out = subprocess.run(
        [sys.executable, "-c", _WARN_CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
        cwd=REPO,
    )
    assert out.stdout.strip() == "decoded"
    assert "Warning" not in out.stderr, out.stderr
