"""End-to-end score of a bundle with its detector re-exported at other input sizes.

Why a script: a larger detector input is the cheapest-looking recall lever (no training),
and it changes the bundle's format (input shape, preprocessing size), so it is measured on
scratch copies, never on ``models/``. Each copy gets the same weights exported at one size,
its manifest updated and re-sealed, and the validation photos scored through the SDK with
the bundle's thresholds unchanged.

    python scripts/detector_input_size.py --config configs/pushin-pill-edge.yaml \
        --bundle models/pushin-pill-edge \
        --weights artifacts/pushin-pill-edge/detector/finetune3/weights/best.pt \
        --sizes 448,512,576,640 --out /tmp/detsize

Needs the config's work_dir with ``ingest`` done (the split is read from it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from pillsnap_sdk import Identifier
from pillsnap_sdk.bundle.manifest import canonical_manifest_digest
from pillsnap_train.config import load_config
from pillsnap_train.detector.export import export_detector_onnx
from pillsnap_train.evaluate import score_pipeline
from pillsnap_train.release.data import ReleaseData

_SHOWN = (
    "end_to_end_accuracy",
    "pill_recall",
    "unknown_rate",
    "false_positives",
    "confidently_wrong",
)


def resized_bundle(src: Path, weights: Path, size: int, out: Path) -> Path:
    """A copy of bundle ``src`` whose detector is ``weights`` exported at ``size`` px."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    export_detector_onnx(weights, out / "detector.onnx", imgsz=size)
    raw = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    det = raw["detector"]
    det["input_shape"] = [1, 3, size, size]
    det["preprocessing"]["size"] = [size, size]
    det["sha256"] = hashlib.sha256((out / "detector.onnx").read_bytes()).hexdigest()
    raw["files"]["detector.onnx"] = det["sha256"]
    raw["manifest_sha256"] = canonical_manifest_digest(raw)
    (out / "manifest.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--weights", type=Path, required=True, help="Ultralytics best.pt")
    p.add_argument("--sizes", default="448,512,576,640")
    p.add_argument("--out", type=Path, required=True, help="scratch folder for the copies")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(s < 32 or s % 32 for s in sizes):
        print("--sizes: multiples of 32, e.g. 448,512", file=sys.stderr)
        return 2
    val = ReleaseData(load_config(args.config)).gt_images("val")
    for size in sizes:
        bundle = resized_bundle(args.bundle, args.weights, size, args.out / f"b{size}")
        idf = Identifier.from_bundle(bundle)
        score = score_pipeline(idf.identify, val).as_dict()
        print(size, json.dumps({k: score[k] for k in _SHOWN}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
