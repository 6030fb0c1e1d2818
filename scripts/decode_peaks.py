"""Measure what decoding hostile-but-legal images costs: peak RSS and CPU time per case.

Each case runs in a fresh child process (``resource.getrusage`` high-water mark after a
warm-up decode of a tiny image of the same format, so codec libraries are already
loaded); the parent only writes the files. Used by docs/reliability.md (full size, the
64 MP default limit) and by ``tests/sdk/test_hardening_memory.py`` (scaled down).

    python scripts/decode_peaks.py                   # 8000x8000 cases, default limit
    python scripts/decode_peaks.py --side 2000 --max-pixels 4000000
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = r"""
import json, resource, sys, time
import numpy as np
from pillsnap_sdk.image import load_image
from pillsnap_sdk.errors import PillsnapError
kind, path, warm = sys.argv[1], sys.argv[2], sys.argv[5]
side, max_pixels = int(sys.argv[3]), int(sys.argv[4])
if warm:
    load_image(open(warm, "rb").read())
if kind == "numpy-rgba":
    inp = np.full((side, side, 4), 90, np.uint8)
    inp[..., 3] = 100
elif kind == "numpy-bgr":
    inp = np.full((side, side, 3), 90, np.uint8)
else:
    inp = path
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # reset the high-water mark so import-time peaks do not hide the decode's
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:
    pass
base = hwm()
t0 = time.process_time()
try:
    load_image(inp, max_pixels=max_pixels, channel_order="BGR" if kind == "numpy-bgr" else "RGB")
    outcome = "decoded"
except PillsnapError as exc:
    outcome = "refused: " + str(exc).split(": ", 1)[-1][:90]
cpu = time.process_time() - t0
peak = hwm()
print(json.dumps({"peak_mb": (peak - base) / 1024, "cpu_s": cpu, "outcome": outcome}))
"""


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise_rgb(side: int) -> Image.Image:
    """Camera-like content (not flat), cheap to make at 64 MP: tiled random blocks."""
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    reps = -(-side // 256)
    return Image.fromarray(np.tile(tile, (reps, reps, 1))[:side, :side])


def _smooth_progressive(side: int) -> bytes:
    """A progressive JPEG of a smooth gradient: its refinement scans are tiny."""
    ramp = np.linspace(0, 255, side, dtype=np.float32).astype(np.uint8)
    grey = np.broadcast_to(ramp[None, :, None], (side, side, 3))
    return _save(Image.fromarray(np.ascontiguousarray(grey)), "JPEG", progressive=True)


def repeat_last_scan(jpeg: bytes, times: int) -> bytes:
    """A progressive JPEG whose last scan is repeated: the CPU attack of issue 12."""
    start = jpeg.rfind(b"\xff\xda")
    end = jpeg.rfind(b"\xff\xd9")
    return jpeg[:end] + jpeg[start:end] * times + jpeg[end:]


def tiny_jpeg_claiming(side: int) -> bytes:
    """A few hundred bytes whose SOF says ``side x side``: a truncated file."""
    real = _save(Image.new("RGB", (16, 16), (200, 10, 10)), "JPEG")
    sof = real.find(b"\xff\xc0")
    out = bytearray(real[: real.find(b"\xff\xda") + 40])
    out[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
    return bytes(out)


def cases(side: int) -> dict[str, Callable[[], bytes]]:
    """Case name -> encoded file (numpy cases are built inside the child)."""
    flat_rgba = Image.new("RGBA", (side, side), (200, 30, 30, 100))
    return {
        "png_rgba_flat": lambda: _save(flat_rgba, "PNG"),
        "png_grey16": lambda: _save(Image.new("I;16", (side, side), 40000), "PNG"),
        "png_palette_transparent": lambda: _save(
            Image.new("P", (side, side), 3), "PNG", transparency=3
        ),
        "tiff_float32_deflate": lambda: _save(
            Image.new("F", (side, side), 0.5), "TIFF", compression="tiff_adobe_deflate"
        ),
        "tiff_rgb_deflate": lambda: _save(
            Image.new("RGB", (side, side), (1, 2, 3)), "TIFF", compression="tiff_adobe_deflate"
        ),
        "jpeg_baseline_photo": lambda: _save(_noise_rgb(side), "JPEG", quality=90),
        "jpeg_progressive_photo": lambda: _save(
            _noise_rgb(side), "JPEG", quality=90, progressive=True
        ),
        "jpeg_progressive_100_scans": lambda: repeat_last_scan(_smooth_progressive(side), 90),
        "jpeg_last_scan_x3000": lambda: repeat_last_scan(_smooth_progressive(side), 3000),
        "jpeg_tiny_claims_full_size": lambda: tiny_jpeg_claiming(side),
        "webp_rgb": lambda: _save(Image.new("RGB", (side, side), (9, 99, 199)), "WEBP"),
        "gif_flat": lambda: _save(Image.new("P", (side, side), 1), "GIF"),
        "bmp_rgb": lambda: _save(Image.new("RGB", (side, side), (1, 2, 3)), "BMP"),
        "numpy-rgba": lambda: b"",
        "numpy-bgr": lambda: b"",
    }


def _warm_file(name: str, folder: Path) -> str:
    fmt = {"png": "PNG", "tif": "TIFF", "jpe": "JPEG", "web": "WEBP", "gif": "GIF", "bmp": "BMP"}
    key = name[:3]
    if key not in fmt:
        return ""
    path = folder / f"warm.{key}"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path, fmt[key])
    return str(path)


def measure(name: str, data: bytes, side: int, max_pixels: int, folder: Path) -> dict[str, object]:
    """Run one case in a child; returns peak_mb, cpu_s, outcome and the file size."""
    path = folder / f"{name}.bin"
    path.write_bytes(data)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            name,
            str(path),
            str(side),
            str(max_pixels),
            _warm_file(name, folder),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    path.unlink()
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    result["file_bytes"] = len(data)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--side", type=int, default=8000)
    ap.add_argument("--max-pixels", type=int, default=64_000_000)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    print(f"| case ({args.side}x{args.side}) | file | outcome | peak RSS | CPU |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases(args.side).items():
            if args.only and name not in args.only:
                continue
            r = measure(name, make(), args.side, args.max_pixels, Path(tmp))
            print(
                f"| {name} | {int(r['file_bytes']):,} B | {r['outcome']} | "  # type: ignore[call-overload]
                f"+{float(r['peak_mb']):.0f} MB | {float(r['cpu_s']):.2f} s |",  # type: ignore[arg-type]
                flush=True,
            )


if __name__ == "__main__":
    main()
