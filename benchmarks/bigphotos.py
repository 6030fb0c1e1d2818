"""12 MP phone-photo stand-ins made from the 0.3 MP photos, for the large-photo checks.

Why made, not downloaded: the repository has no licensed 12 MP pill photos, and an
upscaled copy of a photo whose answer is known lets one check that the SDK names the same
pills at 12 MP as at 0.3 MP. Phones deliver 4032x3024 JPEGs with sensor noise, so the
upscale (Lanczos) gets mild Gaussian noise before it is encoded at quality 92: without it
a smooth upscale entropy-decodes faster than a real photo and flatters the decoder
(:func:`pillsnap_sdk.bench.scenes.upscaled_photo`, also used by ``pillsnap bench``).

    python benchmarks/bigphotos.py OUT_DIR [--images DIR] [--limit N]

writes ``OUT_DIR/<name>.jpg`` for every example photo (and the first ``N`` training photos
of ``--images``) at 4032x3024 (or 3024x4032 for portrait photos), deterministically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pillsnap_sdk.bench.scenes import upscaled_photo

__all__ = ["main"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=Path, default=None, help="YOLO images/ folder")
    ap.add_argument("--limit", type=int, default=0, help="training photos to upscale")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    examples = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.jpg"))
    photos = list(examples)
    if args.images is not None and args.limit > 0:
        photos += sorted(args.images.glob("*.jpg"))[: args.limit]
    for i, src in enumerate(photos):
        dst = args.out / src.name
        if not dst.exists():
            dst.write_bytes(upscaled_photo(src.read_bytes(), seed=i))
        print(dst)


if __name__ == "__main__":
    main()
