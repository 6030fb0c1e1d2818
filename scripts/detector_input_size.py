"""End-to-end score of a bundle with its detector re-exported at other input sizes.

Why a script: a larger detector input is the cheapest-looking recall lever (no training),
and it changes the bundle's format (input shape, preprocessing size), so it is measured on
scratch copies, never on ``models/``. Each copy gets the same weights exported at one size,
written by the SDK's bundle writer (hashed, validated, sealed), and the validation photos
are scored through the SDK with the bundle's thresholds unchanged.

    python scripts/detector_input_size.py --config configs/pushin-pill-edge.yaml \
        --bundle models/pushin-pill-edge \
        --weights artifacts/pushin-pill-edge/detector/finetune3/weights/best.pt \
        --sizes 448,512,576,640 --out /tmp/detsize

Needs the config's work_dir with ``ingest`` done (the split is read from it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from pillsnap_sdk import Identifier
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.bundle.manifest import CARD_NAME, MANIFEST_NAME
from pillsnap_sdk.bundle.writer import write_bundle
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
    """A copy of bundle ``src`` whose detector is ``weights`` exported at ``size`` px,
    written (hashed, validated and sealed) by the SDK's own bundle writer."""
    bundle = load_bundle(src)
    m = bundle.manifest
    if m.detector is None:
        raise SystemExit(f"{src}: the bundle has no detector")
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="detsize-") as tmp:
        onnx = export_detector_onnx(weights, Path(tmp) / m.detector.file, imgsz=size)
        detector_bytes = onnx.read_bytes()
    models = {f: bundle.model_bytes(f) for f in (m.classifier.file, *(v.file for v in m.variants))}
    models[m.detector.file] = detector_bytes
    det = m.detector.model_dump(exclude={"sha256"})
    det["input_shape"] = [1, 3, size, size]
    det["preprocessing"]["size"] = [size, size]
    raw = json.loads(bundle.files[MANIFEST_NAME])
    keep = ("min_sdk_version", "thresholds", "metrics", "data", "provenance")
    write_bundle(
        out,
        name=m.name,
        version=m.version,
        classifier=m.classifier.model_dump(exclude={"sha256"}),
        detector=det,
        variants=[v.model_dump(exclude={"sha256"}) for v in m.variants],
        models=models,
        labels=bundle.labels,
        model_card=bundle.files.get(CARD_NAME, b"").decode("utf-8"),
        extra={k: raw[k] for k in keep if k in raw},
    )
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
