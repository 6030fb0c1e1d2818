"""Issue 16's speed checks in one run, for a before/after table (docs/performance.md).

Runs against whichever ``pillsnap_sdk`` is importable, so the same script measures an
older checkout too::

    python benchmarks/speed_check.py [--rounds 10] [--json OUT.json]
    python benchmarks/bigphotos.py /tmp/big                      # 12 MP stand-ins
    git worktree add /tmp/pre cd9f2f5                            # the SDK before issue 16
    PYTHONPATH=/tmp/pre python benchmarks/speed_check.py --big /tmp/big/table_22_pills.jpg

Rows: ``identify`` of the 22-pill example photo at 0.3 MP and as a 12 MP JPEG
(interleaved; end to end and decode), the 12 MP decode alone against a bare PIL decode,
and ``identify_batch`` of 8 photos against a loop of ``identify`` (paired ratios).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from pillsnap_sdk import Identifier
from pillsnap_sdk.bench.timing import measure_interleaved, paired_ratio
from pillsnap_sdk.image import load_image

REPO = Path(__file__).resolve().parent.parent


def _p50(v: list[float]) -> float:
    return round(statistics.median(v), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "pushin-pill-edge")
    ap.add_argument("--photo", type=Path, default=REPO / "examples" / "table_22_pills.jpg")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--big", type=Path, default=None, help="the 12 MP JPEG (default: made from --photo)"
    )
    args = ap.parse_args()
    idf = Identifier.from_bundle(args.bundle)
    small = args.photo.read_bytes()
    if args.big is not None:  # an older checkout has no upscaled_photo: make it here first
        big = args.big.read_bytes()
    else:
        from pillsnap_sdk.bench.scenes import upscaled_photo

        big = upscaled_photo(small)
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open("/proc/loadavg", encoding="ascii") as fh:
        out["loadavg_before"] = fh.read().split()[:3]

    dec: dict[str, list[float]] = {"small": [], "big": []}

    def ident(key: str, data: bytes) -> Callable[[], None]:
        def once() -> None:
            dec[key].append(idf.identify(data).timings_ms["decode"])

        return once

    def bare() -> None:
        with Image.open(io.BytesIO(big)) as im:
            im.load()

    s = measure_interleaved(
        {
            "e2e_0.3MP": ident("small", small),
            "e2e_12MP": ident("big", big),
            "decode_12MP_load_image": lambda: load_image(big),
            "decode_12MP_bare_PIL": bare,
        },
        args.rounds,
    )
    n = args.rounds
    out["e2e_ms"] = {"0.3MP": _p50(s["e2e_0.3MP"]), "12MP": _p50(s["e2e_12MP"])}
    out["12MP_vs_0.3MP"] = round(paired_ratio(s["e2e_12MP"], s["e2e_0.3MP"]), 3)
    out["identify_decode_ms"] = {"0.3MP": _p50(dec["small"][-n:]), "12MP": _p50(dec["big"][-n:])}
    out["load_image_12MP_ms"] = _p50(s["decode_12MP_load_image"])
    out["bare_PIL_12MP_ms"] = _p50(s["decode_12MP_bare_PIL"])
    out["load_image_vs_bare_PIL"] = round(
        paired_ratio(s["decode_12MP_load_image"], s["decode_12MP_bare_PIL"]), 3
    )
    photos = [small] * 8
    b = measure_interleaved(
        {
            "batch": lambda: idf.identify_batch(photos),
            "loop": lambda: [idf.identify(p) for p in photos],
        },
        max(3, args.rounds // 2),
    )
    out["batch8_ms"], out["loop8_ms"] = _p50(b["batch"]), _p50(b["loop"])
    out["batch_vs_loop"] = round(paired_ratio(b["batch"], b["loop"]), 3)
    with open("/proc/loadavg", encoding="ascii") as fh:
        out["loadavg_after"] = fh.read().split()[:3]
    text = json.dumps(out, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
