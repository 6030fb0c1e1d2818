"""Hardening II, images: memory that holds, a format allow-list, decode CPU limits, no
process-global state, typed errors for every bad argument, file objects and BGR arrays.

Why: an attack suite found 8000x8000 RGBA PNGs of 249 KB peaking at +1.67 GB inside the
64 MP limit, ICO files decoding an embedded 13377x13377 PNG inside ``Image.open``, EPS
reaching Ghostscript, a 165 KB JPEG burning 17.6 s of CPU, a leaked global warnings
filter under threads, and raw TypeErrors for odd arguments. Memory and CPU bounds are
measured in child processes (peak RSS from the kernel's VmHWM, reset before each case).
Time bounds are several times the value measured on a loaded 2-core box, tight enough
to catch the attack they guard.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tinymodels import quadrant_image

from pillsnap_sdk import Identifier, InvalidArgumentError, InvalidImageError
from pillsnap_sdk.image import load_image
from pillsnap_sdk.imagelimits import MAX_JPEG_SCANS, count_jpeg_scans

REPO = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("decode_peaks", REPO / "scripts/decode_peaks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peaks = _script()


@pytest.fixture(scope="module")
def idf_det(tiny_bundle: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def idf(tiny_bundle_nodet: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle_nodet)


def _save(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _ico_with_big_png(side: int) -> bytes:
    """ICO directory says 16x16; the embedded PNG is ``side x side`` (PIL decodes it in open)."""
    png = _save(Image.new("L", (side, side), 7), "PNG")
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def _progressive(side: int = 256) -> bytes:
    ramp = np.linspace(0, 255, side, dtype=np.float32).astype(np.uint8)
    rgb = np.ascontiguousarray(np.broadcast_to(ramp[None, :, None], (side, side, 3)))
    return _save(Image.fromarray(rgb), "JPEG", progressive=True)


# name -> (file bytes, message fragment); all refused from the header.
def _refusals() -> dict[str, tuple[bytes, str]]:
    small = Image.new("RGB", (8, 8), (1, 2, 3))
    return {
        "ico_embedded_png": (_ico_with_big_png(6000), "not a decodable image"),
        "eps": (
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
            "not a decodable image",
        ),
        "sgi": (_save(small, "SGI"), "not a decodable image"),
        "pcx": (_save(small, "PCX"), "not a decodable image"),
        "tga": (_save(small, "TGA"), "not a decodable image"),
        "im": (_save(small, "IM"), "not a decodable image"),
        "dds": (_save(Image.new("RGBA", (8, 8)), "DDS"), "not a decodable image"),
        "qoi": (_save(small, "QOI"), "not a decodable image"),
        "ppm": (_save(small, "PPM"), "not a decodable image"),
        "jpeg_last_scan_x3000": (peaks.repeat_last_scan(_progressive(), 3000), "scans"),
        "jpeg_tiny_claims_1900": (peaks.tiny_jpeg_claiming(1900), "truncated"),
        "webp_over_budget": (
            _save(Image.new("RGB", (1900, 1900), (1, 2, 3)), "WEBP"),
            "memory budget",
        ),
        "tiff_float_over_budget": (
            _save(Image.new("F", (1900, 1900), 0.5), "TIFF", compression="tiff_adobe_deflate"),
            "memory budget",
        ),
        "jpeg_progressive_over_budget": (_progressive(1900), "memory budget"),
    }


_REFUSE_CHILD = r"""
import json, sys, time
from pillsnap_sdk.image import load_image
from pillsnap_sdk.errors import InvalidImageError
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
out = {}
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = hwm()
    t0 = time.process_time()
    try:
        load_image(data, max_pixels=int(sys.argv[1]))
        msg = "DECODED"
    except InvalidImageError as exc:
        msg = str(exc)
    out[path] = {"cpu_s": time.process_time() - t0, "peak_mb": hwm() - base, "msg": msg}
print(json.dumps(out))
"""


def test_hostile_files_refused_from_header_in_bounded_time_and_memory(tmp_path: Path) -> None:
    """Formats outside the allow-list, a 3000-scan JPEG, a 633-byte "8000x8000" JPEG and
    files over the byte budget (limit 4 MP = 32 MB): each refused with InvalidImageError,
    < 0.5 s CPU and < 8 MB peak (measured: < 0.05 s and < 1 MB each)."""
    cases = _refusals()
    paths = {}
    for name, (data, _) in cases.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", _REFUSE_CHILD, "4000000", *map(str, paths.values())],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for name, (_, fragment) in cases.items():
        r = results[str(paths[name])]
        assert fragment in r["msg"], (name, r)
        assert r["cpu_s"] < 0.5, (name, r)
        assert r["peak_mb"] < 8, (name, r)


@pytest.mark.parametrize(
    "case",
    [
        "png_rgba_flat",
        "numpy-rgba",
        pytest.param("png_grey16", marks=pytest.mark.slow),
        pytest.param("jpeg_baseline_photo", marks=pytest.mark.slow),
    ],
)
def test_decode_peak_stays_in_byte_budget(case: str, tmp_path: Path) -> None:
    """At 2000x2000 under max_image_pixels=4 MP (budget 8 B/px = 32 MB): decoded, peak
    RSS within 1.5x the budget (measured 20-33 MB). Before: RGBA ~104 MB, 16-bit ~117 MB."""
    make = peaks.cases(2000)[case]
    r = peaks.measure(case, make(), 2000, 4_000_000, tmp_path)
    assert r["outcome"] == "decoded", r
    assert r["peak_mb"] < 48, r
    assert r["cpu_s"] < 5, r


def test_allowed_formats_still_decode() -> None:
    """The allow-list keeps every format a phone or web upload uses."""
    rgb = Image.new("RGB", (40, 30), (200, 30, 30))
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"):
        out = load_image(_save(rgb, fmt))
        assert out.shape == (30, 40, 3), fmt
        assert out[15, 20, 0] > 150, fmt


def test_caller_pil_image_of_other_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pcx"
    Image.new("RGB", (8, 8)).save(path, "PCX")
    with Image.open(path) as img, pytest.raises(InvalidImageError, match="format PCX"):
        load_image(img)
    with Image.open(path) as img:  # converted by the caller: fine
        assert load_image(img.convert("RGB")).shape == (8, 8, 3)


def test_jpeg_scan_count() -> None:
    """Baseline = 1 scan, libjpeg progressive colour = 10; the limit's boundary is exact."""
    assert count_jpeg_scans(_save(Image.new("RGB", (32, 32)), "JPEG")) == 1
    prog = _progressive(64)
    assert count_jpeg_scans(prog) == 10
    at_limit = peaks.repeat_last_scan(prog, MAX_JPEG_SCANS - 10)
    assert count_jpeg_scans(at_limit) == MAX_JPEG_SCANS
    load_image(at_limit)  # accepted (libjpeg may warn about the repeated refinement)
    with pytest.raises(InvalidImageError, match=f"more than {MAX_JPEG_SCANS} scans"):
        load_image(peaks.repeat_last_scan(prog, MAX_JPEG_SCANS - 9))


def test_exif_thumbnail_scans_are_not_counted() -> None:
    """A JPEG thumbnail inside APP1 has its own SOS; the segment walk skips it."""
    thumb = _save(Image.new("RGB", (16, 16)), "JPEG")
    app1 = b"Exif\0\0" + thumb * 3
    jpeg = _save(Image.new("RGB", (32, 32)), "JPEG")
    spliced = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]
    assert count_jpeg_scans(spliced) == 1


# -- class 5: no process-global state ------------------------------------------------------------
def test_no_global_warning_state_under_threads(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_image_pixels above PIL's threshold, 8 threads on bomb headers: the
    process-wide warnings filters are untouched and catch_warnings/Image.open never run."""
    from .badfiles import crafted_png

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("process-global state touched")

    monkeypatch.setattr(warnings, "catch_warnings", forbidden)
    monkeypatch.setattr(Image, "open", forbidden)
    before = list(warnings.filters)
    idf = Identifier.from_bundle(tiny_bundle, max_image_pixels=150_000_000)
    header = crafted_png(10_000, 9_500, bit_depth=1, colour_type=0)  # 95 MP > PIL's 89 MP
    errors: list[BaseException] = []

    def work() -> None:
        for _ in range(3):
            try:
                idf.identify(header)
            except InvalidImageError:
                pass
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert list(warnings.filters) == before


# -- class 6: typed errors for bad arguments -----------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), 1.5e7, True, "64000000", None, 0, -5], ids=repr)
def test_max_image_pixels_must_be_positive_int(tiny_bundle: Path, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="max_image_pixels"):
        Identifier.from_bundle(tiny_bundle, max_image_pixels=bad)
    with pytest.raises(InvalidArgumentError, match="max_image_pixels"):
        load_image(np.zeros((4, 4, 3), np.uint8), max_pixels=bad)


@pytest.mark.parametrize(
    "bad",
    ["CPUExecutionProvider", [123], [None], [("CPUExecutionProvider", 5)], 7, {"a": 1}],
    ids=["str", "int_item", "none_item", "bad_options", "int", "dict"],
)
def test_providers_shape_is_checked(tiny_bundle: Path, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="provider"):
        Identifier.from_bundle(tiny_bundle, providers=bad)


@pytest.mark.parametrize("bad", [None, 5, "photo.jpg", b"\xff\xd8", np.zeros((2, 8, 8, 3))])
def test_identify_batch_needs_a_list(idf: Identifier, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="list or tuple"):
        idf.identify_batch(bad)


def test_max_concurrent_runs_checked(tiny_bundle: Path) -> None:
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidArgumentError, match="max_concurrent_runs"):
            Identifier.from_bundle(tiny_bundle, max_concurrent_runs=bad)


class _PathBytes(os.PathLike):  # type: ignore[type-arg]
    def __fspath__(self) -> bytes:  # type: ignore[override]
        return b"/tmp/x.jpg"


class _PathRaises(os.PathLike):  # type: ignore[type-arg]
    def __fspath__(self) -> str:
        raise RuntimeError("no path today")


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_odd_inputs_are_typed(idf: Identifier, tmp_path: Path) -> None:
    mv = memoryview(_save(Image.new("RGB", (8, 8)), "PNG"))
    mv.release()
    with pytest.raises(InvalidImageError, match="memoryview"):
        idf.identify(mv)
    with pytest.raises(InvalidImageError, match="must be text"):
        idf.identify(_PathBytes())
    with pytest.raises(InvalidImageError, match="no path today"):
        idf.identify(_PathRaises())
    with pytest.raises(InvalidImageError, match="is a directory"):
        idf.identify(tmp_path)
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InvalidImageError, match="not a regular file"):
        idf.identify(fifo)  # refused from stat: a read would block forever
    matrix = np.matrix(np.full((16, 16), 200, np.uint8))
    assert idf.identify(matrix).image_size == (16, 16)


def test_path_size_cap(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(3 << 20))
    idf = Identifier.from_bundle(tiny_bundle, max_image_pixels=100_000)  # cap 1.4 MB
    opened: list[Path] = []
    real = Path.open

    def spy(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    with pytest.raises(InvalidImageError, match="larger than any photo"):
        idf.identify(big)
    assert opened == []
    with pytest.raises(InvalidImageError, match="larger than any photo"):
        idf.identify(big.read_bytes())


def test_detect_takes_any_image_input(idf_det: Identifier) -> None:
    """detect() on RGBA/grey arrays converts them (was a raw error); bad dtype is typed."""
    rgb = quadrant_image({0: "red", 3: "blue"})
    boxes, _ = idf_det.detect(rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    boxes_rgba, _ = idf_det.detect(rgba)
    assert np.array_equal(boxes, boxes_rgba) and len(boxes) == 2
    with pytest.raises(InvalidImageError, match="dtype uint8"):
        idf_det.detect(rgb.astype(np.float32))


# -- issue 13: binary file objects and channel_order ----------------------------------------
def test_binary_file_objects(idf_det: Identifier, tmp_path: Path) -> None:
    arr = quadrant_image({0: "red", 3: "blue"})
    data = _save(Image.fromarray(arr), "PNG")
    want = idf_det.identify(data).model_dump(exclude={"timings_ms"})
    path = tmp_path / "p.png"
    path.write_bytes(data)

    class Reader:  # anything with read() -> bytes
        def read(self, n: int = -1) -> bytes:
            return data

    # SpooledTemporaryFile is what FastAPI's UploadFile.file is.
    with path.open("rb") as fh, tempfile.SpooledTemporaryFile() as spooled:
        spooled.write(data)
        spooled.seek(0)
        for stream in (io.BytesIO(data), fh, spooled, Reader()):
            got = idf_det.identify(stream).model_dump(exclude={"timings_ms"})
            assert got == want, type(stream)


def test_bad_file_objects_are_typed(idf: Identifier, tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(_save(Image.new("RGB", (8, 8)), "PNG"))

    class ReturnsStr:
        def read(self, n: int = -1) -> str:
            return "not bytes"

    class Raises:
        def read(self, n: int = -1) -> bytes:
            raise OSError("connection reset")

    with (
        path.open("r", encoding="latin-1") as text,
        pytest.raises(InvalidImageError, match="text mode"),
    ):
        idf.identify(text)
    with pytest.raises(InvalidImageError, match="returned str"):
        idf.identify(ReturnsStr())
    with pytest.raises(InvalidImageError, match="connection reset"):
        idf.identify(Raises())
    with pytest.raises(InvalidImageError, match="empty"):
        idf.identify(io.BytesIO(b""))


def test_file_object_read_is_capped(tiny_bundle: Path) -> None:
    """read() is asked for cap + 1 bytes, never "everything"; more is refused."""
    asked: list[int] = []

    class Endless:
        def read(self, n: int = -1) -> bytes:
            asked.append(n)
            return b"\xff" * n

    idf = Identifier.from_bundle(tiny_bundle, max_image_pixels=10_000)
    with pytest.raises(InvalidImageError, match="larger than any photo"):
        idf.identify(Endless())
    assert asked == [8 * 10_000 + 1]  # min(4 B/px + 1 MiB, the 8 B/px budget) + 1


def test_channel_order_bgr(idf_det: Identifier) -> None:
    rgb = quadrant_image({0: "red", 3: "blue"})
    want = idf_det.identify(rgb).model_dump(exclude={"timings_ms"})
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    got = idf_det.identify(bgr, channel_order="BGR").model_dump(exclude={"timings_ms"})
    assert got == want
    assert idf_det.identify(bgr).pills[0].candidates[0].name != want["pills"][0]["candidates"][0][
        "name"
    ] or len(want["pills"]) != len(idf_det.identify(bgr).pills)
    bgra = np.dstack([bgr, np.full(rgb.shape[:2], 255, np.uint8)])
    got4 = idf_det.identify(bgra, channel_order="BGR").model_dump(exclude={"timings_ms"})
    assert got4 == want
    batch = idf_det.identify_batch([bgr, bgr], channel_order="BGR")
    assert [r.model_dump(exclude={"timings_ms"}) for r in batch] == [want, want]
    boxes, _ = idf_det.detect(bgr, channel_order="BGR")
    assert len(boxes) == 2
    for bad in ("bgr", "RGBA", None, 1):
        with pytest.raises(InvalidArgumentError, match="channel_order"):
            idf_det.identify(rgb, channel_order=bad)
