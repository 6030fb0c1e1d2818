"""Soak a bundle: many mixed ``identify`` calls in one process, watching resident memory.

Why: a kiosk or server process lives for weeks. A leak of a few KB per call (an
onnxruntime arena that keeps every peak shape, a cache keyed by image size, a reference
cycle holding numpy buffers) only shows after thousands of calls. This runs a
deterministic mix of image sizes (64 px .. 1600x1200), pill counts (0..4), input kinds
(numpy, PNG, JPEG), modes, batches and invalid inputs, samples RSS with psutil, and
reports growth after a warm-up.

    python scripts/soak.py --bundle models/<bundle> --calls 10000
    python scripts/soak.py --bundle /tmp/tiny --calls 2000 --json

``tests/sdk/test_soak.py`` imports :func:`soak` from here and asserts on its report, so
the numbers in docs/reliability.md come from exactly this code.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

from pillsnap_sdk import Identifier, InvalidImageError

COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20)]
SIZES = [(64, 64), (128, 96), (320, 240), (97, 301), (640, 480), (1024, 768), (1600, 1200)]


@dataclass(frozen=True)
class Call:
    images: tuple[Any, ...]
    mode: str
    top_k: int
    batch: bool
    valid: bool


def photo(pills: int, width: int, height: int, seed: int) -> np.ndarray:
    """Dark background with ``pills`` saturated blocks, one per quadrant (0..4)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 30, size=(height, width, 3), dtype=np.uint8)
    qh, qw = height // 2, width // 2
    for q in range(pills):
        y, x = divmod(q, 2)
        img[y * qh : (y + 1) * qh, x * qw : (x + 1) * qw] = COLOURS[(q + seed) % 4]
    return img


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    return buf.getvalue()


def workload(has_detector: bool, max_side: int = 1600) -> list[Call]:
    """A fixed set of calls (sizes up to ``max_side``); the soak draws from it at random."""
    modes = ["auto", "single", "combo"] if has_detector else ["auto", "single"]
    calls: list[Call] = []
    for i, (w, h) in enumerate(SIZES):
        if max(w, h) > max_side:
            continue
        for pills in range(5):
            arr = photo(pills, w, h, seed=i * 5 + pills)
            value: Any = arr
            if (i + pills) % 3 == 1:
                value = _encode(arr, "PNG")
            elif (i + pills) % 3 == 2:
                value = _encode(arr, "JPEG")
            calls.append(
                Call((value,), modes[(i + pills) % len(modes)], 1 + pills % 5, False, True)
            )
    small = [photo(p, 160, 120, seed=100 + p) for p in range(5)]
    calls.append(Call(tuple(small), "auto", 3, True, True))
    calls.append(Call(tuple(small[2:]) * 3, modes[-1], 2, True, True))  # up to 27 crops
    calls.append(Call((np.zeros((8, 8, 3), np.float32),), "auto", 3, False, False))
    calls.append(Call((b"not an image" * 50,), "auto", 3, False, False))
    calls.append(Call((_encode(small[4], "PNG")[:100],), "auto", 3, False, False))
    return calls


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def soak(
    idf: Identifier,
    calls: int,
    *,
    warmup: int = 500,
    sample_every: int = 500,
    seed: int = 0,
    max_side: int = 1600,
) -> dict[str, Any]:
    """Run ``warmup`` then ``calls`` calls; return RSS samples and growth after warm-up."""
    plan = workload(idf.has_detector, max_side)
    rng = np.random.default_rng(seed)

    def one() -> bool:
        c = plan[int(rng.integers(len(plan)))]
        try:
            if c.batch:
                idf.identify_batch(list(c.images), mode=c.mode, top_k=c.top_k)  # type: ignore[arg-type]
            else:
                idf.identify(c.images[0], mode=c.mode, top_k=c.top_k)  # type: ignore[arg-type]
        except InvalidImageError:
            if c.valid:
                raise
            return False
        if not c.valid:
            raise AssertionError("an invalid input was accepted")
        return True

    for _ in range(warmup):
        one()
    gc.collect()
    base = rss_mb()
    samples = [(0, round(base, 1))]
    refused = 0
    t0 = time.perf_counter()
    for n in range(1, calls + 1):
        refused += not one()
        if n % sample_every == 0 or n == calls:
            gc.collect()
            samples.append((n, round(rss_mb(), 1)))
    elapsed = time.perf_counter() - t0
    final = samples[-1][1]
    half = [s for n, s in samples if n >= calls // 2]
    return {
        "calls": calls,
        "warmup_calls": warmup,
        "invalid_calls": refused,
        "seconds": round(elapsed, 1),
        "ms_per_call": round(1000.0 * elapsed / calls, 2),
        "rss_baseline_mb": round(base, 1),
        "rss_final_mb": final,
        "rss_max_mb": max(s for _, s in samples),
        "growth_pct": round(100.0 * (final - base) / base, 2),
        "second_half_growth_mb": round(half[-1] - half[0], 1),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    idf = Identifier.from_bundle(args.bundle, intra_op_threads=args.threads)
    report = soak(idf, args.calls, warmup=args.warmup)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if key != "samples":
                print(f"{key:>22}: {value}")
        print("  samples (call, RSS MB):", " ".join(f"{n}:{s}" for n, s in report["samples"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
