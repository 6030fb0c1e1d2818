"""Generate the hostile-input corpus for the SDK's input hardening tests.

Everything is built in memory from PIL, numpy and a hand-rolled PNG chunk writer, so the
corpus needs no fixtures on disk, is deterministic, and documents *how* each bad file was
made. Each :class:`Case` says what :meth:`Identifier.identify` must do with it:

* ``"ok"``: decode and return a valid result (``size`` is the expected ``(w, h)``);
* ``"invalid"``: raise :class:`pillsnap_sdk.InvalidImageError` whose message contains
  one of ``fragments`` (so the caller learns *why*);
* ``"either"``: a corrupted payload that a decoder may legitimately repair (JPEG
  entropy-coded data) - a valid result or InvalidImageError, never anything else.

Also imported by a child interpreter in ``test_inputs.py`` (the crash test), so it
depends only on numpy and PIL.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

Expect = Literal["ok", "invalid", "either"]

#: The EXIF tag that says how the stored pixels must be turned to display upright.
ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Case:
    """One input and what the SDK must do with it."""

    name: str  # file name (extension included: some are deliberately wrong)
    data: bytes
    expect: Expect
    fragments: tuple[str, ...] = ()
    size: tuple[int, int] | None = None  # (width, height) after EXIF orientation
    notes: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


# -- encoders --------------------------------------------------------------------------------
def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gradient(width: int, height: int) -> np.ndarray:
    """A colourful, deterministic RGB test picture (not flat, so JPEG has real content)."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    b = ((x + y) % 256).astype(np.uint8)
    return np.dstack([r, g, b])


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def crafted_png(
    width: int,
    height: int,
    *,
    bit_depth: int = 8,
    colour_type: int = 2,
    idat: bytes | None = None,
) -> bytes:
    """A PNG whose IHDR claims ``width x height`` with valid CRCs but a tiny IDAT.

    The header is perfectly well formed, so only a size check *before* decoding stops it;
    the IDAT (a few bytes of zlib) could never fill the claimed image.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = zlib.compress(b"\x00" * 16) if idat is None else idat
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )


def compressible_png(width: int, height: int) -> bytes:
    """A *valid*, fully decodable 1-bit PNG of ``width x height`` that compresses to KBs."""
    return encode(Image.new("1", (width, height), 0), "PNG", optimize=False)


def with_orientation(display: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels a camera writes for ``display`` under EXIF ``orientation``.

    Derived from the EXIF spec's row/column semantics, independently of PIL's
    ``exif_transpose`` (so the test does not check PIL against itself):
    1 row0=top col0=left, 2 top/right, 3 bottom/right, 4 bottom/left,
    5 row0=left col0=top, 6 right/top, 7 right/bottom, 8 left/bottom.
    """
    d = display
    stored = {
        1: d,
        2: d[:, ::-1],
        3: d[::-1, ::-1],
        4: d[::-1, :],
        5: d.transpose(1, 0, 2),
        6: d[:, ::-1].transpose(1, 0, 2),
        7: d[::-1, ::-1].transpose(1, 0, 2),
        8: d[::-1, :].transpose(1, 0, 2),
    }[orientation]
    return np.ascontiguousarray(stored)


MARKER = (230, 20, 20)  # the tiny classifier's "red pill"


def orientation_display(width: int = 96, height: int = 64) -> np.ndarray:
    """Upright picture: black with a red block filling the top-left quadrant."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[: height // 2, : width // 2] = MARKER
    return img


def orientation_jpeg(orientation: int, width: int = 96, height: int = 64) -> bytes:
    stored = Image.fromarray(with_orientation(orientation_display(width, height), orientation))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def orientation_png(orientation: int, width: int = 96, height: int = 64) -> bytes:
    stored = Image.fromarray(with_orientation(orientation_display(width, height), orientation))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return encode(stored, "PNG", exif=exif.tobytes())


def animated_gif() -> bytes:
    """Two frames: red first, blue second; the SDK must classify the first frame."""
    red = Image.new("RGB", (64, 64), MARKER)
    blue = Image.new("RGB", (64, 64), (20, 20, 230))
    buf = io.BytesIO()
    red.save(buf, format="GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("photo.jpg", b"not really a photo")
    return buf.getvalue()


def _flip(data: bytes, offsets: list[int]) -> bytes:
    out = bytearray(data)
    for off in offsets:
        out[off] ^= 0xFF
    return bytes(out)


def _palette(transparent: bool) -> bytes:
    img = Image.fromarray(gradient(40, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    if transparent:
        return encode(img, "PNG", transparency=0)
    return encode(img, "PNG")


def _sixteen_bit() -> bytes:
    arr = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16", img.mode
    return encode(img, "PNG")


def _cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(gradient(40, 30)).convert("CMYK"), "JPEG", quality=90)


def _mode(mode: str, fmt: str = "PNG") -> bytes:
    return encode(Image.fromarray(gradient(40, 30)).convert(mode), fmt)


def _gif_zero_size() -> bytes:
    """A GIF logical screen of 0x0: parses as a header, has no pixels."""
    return b"GIF89a" + struct.pack("<HHBBB", 0, 0, 0, 0, 0) + b";"


# -- the corpus -------------------------------------------------------------------------------
NOT_IMAGE = ("not a decodable image",)
CORRUPT = ("corrupt or truncated", "cannot parse image header", "not a decodable image")
TOO_BIG = ("exceeds the limit", "too many pixels")


def corpus() -> list[Case]:
    """Every hostile or exotic file the SDK must survive, with its expected outcome."""
    jpeg = encode(Image.fromarray(gradient(64, 48)), "JPEG", quality=90)
    png = encode(Image.fromarray(gradient(64, 48)), "PNG")
    # PNG chunk layout: 8 signature + IHDR (4 len + 4 type + 13 data + 4 crc) = 33 bytes.
    idat_at = png.index(b"IDAT") + 8
    cases = [
        Case("empty.jpg", b"", "invalid", ("empty",)),
        Case("truncated_half.jpg", jpeg[: len(jpeg) // 2], "invalid", CORRUPT),
        Case("truncated_header.jpg", jpeg[:20], "invalid", CORRUPT),
        Case("truncated_half.png", png[: len(png) // 2], "invalid", CORRUPT),
        Case("signature_only.png", png[:8], "invalid", CORRUPT),
        Case(
            "corrupt_scan.jpg",
            _flip(jpeg, [len(jpeg) // 2, len(jpeg) // 2 + 7, len(jpeg) - 40]),
            "either",
            CORRUPT,
            notes="libjpeg may conceal damaged entropy-coded data",
        ),
        Case("corrupt_ihdr.png", _flip(png, [20]), "invalid", CORRUPT, notes="bad IHDR CRC"),
        Case("corrupt_idat.png", _flip(png, [idat_at + 5]), "either", CORRUPT),
        Case("png_named.jpg", png, "ok", size=(64, 48)),
        Case("jpeg_named.png", jpeg, "ok", size=(64, 48)),
        Case("jpeg_named.txt", jpeg, "ok", size=(64, 48)),
        Case("text.jpg", b"hello, this is not a photo\n" * 20, "invalid", NOT_IMAGE),
        Case("archive.zip", _zip_bytes(), "invalid", NOT_IMAGE),
        Case("archive_named.jpg", _zip_bytes(), "invalid", NOT_IMAGE),
        Case(
            "document.pdf",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
            "invalid",
            NOT_IMAGE,
        ),
        Case(
            "html_named.png", b"<!doctype html><html><body>hi</body></html>", "invalid", NOT_IMAGE
        ),
        Case("zeros.jpg", bytes(4096), "invalid", NOT_IMAGE),
        Case("random.png", np.random.default_rng(0).bytes(4096), "invalid", NOT_IMAGE),
        Case("gif_zero_size.gif", _gif_zero_size(), "invalid", ("no pixels", *CORRUPT)),
        Case("one_pixel.png", encode(Image.new("RGB", (1, 1), MARKER), "PNG"), "ok", size=(1, 1)),
        Case(
            "wide_100000x10.png",
            encode(Image.new("RGB", (100_000, 10), MARKER), "PNG"),
            "ok",
            size=(100_000, 10),
        ),
        Case(
            "tall_10x100000.png",
            encode(Image.new("RGB", (10, 100_000), MARKER), "PNG"),
            "ok",
            size=(10, 100_000),
        ),
        Case(
            "bomb_header_100000x100000.png",
            crafted_png(100_000, 100_000),
            "invalid",
            TOO_BIG,
            notes="valid IHDR claiming 10^10 pixels, 16-byte IDAT",
        ),
        Case(
            "bomb_header_65535x65535_grey.png",
            crafted_png(65_535, 65_535, colour_type=0),
            "invalid",
            TOO_BIG,
        ),
        Case(
            "bomb_compressible_9000x9000.png",
            compressible_png(9_000, 9_000),
            "invalid",
            TOO_BIG,
            notes="valid 81 MP PNG, a few KB on disk",
        ),
        Case("png16.png", _sixteen_bit(), "ok", size=(40, 30)),
        Case("palette.png", _palette(False), "ok", size=(40, 30)),
        Case("palette_transparent.png", _palette(True), "ok", size=(40, 30)),
        Case("rgba.png", _mode("RGBA"), "ok", size=(40, 30)),
        Case("la.png", _mode("LA"), "ok", size=(40, 30)),
        Case("grey.png", _mode("L"), "ok", size=(40, 30)),
        Case("bilevel.png", _mode("1"), "ok", size=(40, 30)),
        Case("grey.jpg", _mode("L", "JPEG"), "ok", size=(40, 30)),
        Case("cmyk.jpg", _cmyk_jpeg(), "ok", size=(40, 30)),
        Case("animated.gif", animated_gif(), "ok", size=(64, 64)),
        Case("photo.bmp", _mode("RGB", "BMP"), "ok", size=(40, 30)),
        Case("photo.tiff", _mode("RGB", "TIFF"), "ok", size=(40, 30)),
        Case("photo.webp", _mode("RGB", "WEBP"), "ok", size=(40, 30)),
        Case(
            "float.tiff",
            encode(Image.fromarray(gradient(40, 30)[:, :, 0].astype(np.float32) / 255.0), "TIFF"),
            "ok",
            size=(40, 30),
        ),
    ]
    for o in range(1, 9):
        w, h = (96, 64)
        cases.append(
            Case(
                f"orientation_{o}.jpg",
                orientation_jpeg(o),
                "ok",
                size=(w, h),
                meta={"orientation": o},
            )
        )
    return cases


# -- numpy inputs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayCase:
    name: str
    make: Callable[[], Any]  # built lazily: some are views of a base array
    expect: Expect
    fragments: tuple[str, ...] = ()
    size: tuple[int, int] | None = None


def _base() -> np.ndarray:
    return gradient(64, 48)


def array_cases() -> list[ArrayCase]:
    """numpy inputs of every wrong dtype/shape, plus legal but awkward memory layouts."""
    dtype = ("dtype uint8",)
    shape = ("must be HxWx3",)
    empty = ("no pixels",)
    return [
        ArrayCase("float32", lambda: _base().astype(np.float32), "invalid", dtype),
        ArrayCase("float64_unit", lambda: _base() / 255.0, "invalid", dtype),
        ArrayCase("int16", lambda: _base().astype(np.int16), "invalid", dtype),
        ArrayCase("uint16", lambda: _base().astype(np.uint16), "invalid", dtype),
        ArrayCase("bool", lambda: _base() > 128, "invalid", dtype),
        ArrayCase("object", lambda: _base().astype(object), "invalid", dtype),
        ArrayCase("hxwx2", lambda: _base()[:, :, :2].copy(), "invalid", shape),
        ArrayCase("hxwx5", lambda: np.zeros((48, 64, 5), np.uint8), "invalid", shape),
        ArrayCase("1d", lambda: _base().ravel(), "invalid", shape),
        ArrayCase("4d_batch", lambda: _base()[None], "invalid", shape),
        ArrayCase("0d", lambda: np.array(7, dtype=np.uint8), "invalid", shape),
        ArrayCase("zero_rows", lambda: np.zeros((0, 64, 3), np.uint8), "invalid", empty),
        ArrayCase("zero_cols", lambda: np.zeros((48, 0, 3), np.uint8), "invalid", empty),
        ArrayCase("zero_grey", lambda: np.zeros((0, 0), np.uint8), "invalid", empty),
        ArrayCase("rgb", _base, "ok", size=(64, 48)),
        ArrayCase(
            "rgba",
            lambda: np.dstack([_base(), np.full((48, 64), 128, np.uint8)]),
            "ok",
            size=(64, 48),
        ),
        ArrayCase("grey", lambda: _base()[:, :, 0].copy(), "ok", size=(64, 48)),
        ArrayCase("grey_hxwx1", lambda: _base()[:, :, :1].copy(), "ok", size=(64, 48)),
        ArrayCase("step_slice", lambda: _base()[::2, ::3], "ok", size=(22, 24)),
        ArrayCase("bgr_view", lambda: _base()[:, :, ::-1], "ok", size=(64, 48)),
        ArrayCase("transposed", lambda: _base().transpose(1, 0, 2), "ok", size=(48, 64)),
        ArrayCase("fortran", lambda: np.asfortranarray(_base()), "ok", size=(64, 48)),
        ArrayCase("readonly", _readonly, "ok", size=(64, 48)),
        ArrayCase(
            "broadcast", lambda: np.broadcast_to(np.uint8(200), (48, 64, 3)), "ok", size=(64, 48)
        ),
        ArrayCase("one_pixel", lambda: np.full((1, 1, 3), 200, np.uint8), "ok", size=(1, 1)),
        ArrayCase("big_endian_u1", lambda: _base().astype(">u1"), "ok", size=(64, 48)),
    ]


def _readonly() -> np.ndarray:
    a = _base()
    a.setflags(write=False)
    return a


def mutate(data: bytes, seed: int) -> bytes:
    """A seeded random corruption of ``data``: flips, truncation, insertion or duplication."""
    rng = np.random.default_rng(seed)
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        op = int(rng.integers(0, 4))
        pos = int(rng.integers(0, max(len(buf), 1)))
        if op == 0 and buf:
            buf[pos % len(buf)] ^= int(rng.integers(1, 256))
        elif op == 1:
            del buf[pos:]
        elif op == 2:
            buf[pos:pos] = rng.bytes(int(rng.integers(1, 32)))
        else:
            buf[pos:pos] = buf[pos : pos + int(rng.integers(1, 64))]
    return bytes(buf)


def seed_files() -> dict[str, bytes]:
    """Small valid files in every format the SDK decodes: the fuzzers' starting points."""
    img = Image.fromarray(gradient(24, 16))
    return {
        "jpeg": encode(img, "JPEG", quality=85),
        "jpeg_exif": orientation_jpeg(6, 24, 16),
        "png": encode(img, "PNG"),
        "png_palette": _palette(True),
        "png16": _sixteen_bit(),
        "gif": animated_gif(),
        "bmp": encode(img, "BMP"),
        "tiff": encode(img, "TIFF"),
        "webp": encode(img, "WEBP"),
    }
