"""Detector AP@0.5, best-F1 recall/precision of a bundle on each detector validation source.

Why a script: the release reports one AP over all detector validation photos; comparing two
bundles on the photos of *other* phones and tables (``data.detector_sources``) separately
says whether a new detector generalises, which is what customers see.

    python scripts/detector_ap.py --config configs/pushin-pill-edge.yaml --bundle DIR [--json F]

Needs the config's work_dir with ``ingest`` done (the split is read from it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.image import load_image
from pillsnap_sdk.postprocess import decode_yolo
from pillsnap_sdk.preprocessing import preprocess
from pillsnap_train.calibrate import choose_detector_threshold
from pillsnap_train.config import load_config
from pillsnap_train.data.records import group_by_image
from pillsnap_train.release import Release


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rel = Release(load_config(args.config), read_only=True)
    bundle = load_bundle(args.bundle)
    det, th = bundle.manifest.detector, bundle.manifest.thresholds
    if det is None:
        print("the bundle has no detector", file=sys.stderr)
        return 2
    sess = ort.InferenceSession(bundle.model_bytes(det.file), providers=["CPUExecutionProvider"])

    def detect(path: str) -> tuple[np.ndarray, np.ndarray]:
        # The bundle's own preprocessing and NMS; a low threshold shows the whole PR curve.
        tensor, geom = preprocess(load_image(path), det.preprocessing)
        raw = np.asarray(sess.run(None, {det.input_name: tensor[None]})[0], np.float32)
        boxes, scores = decode_yolo(raw, 0.01, th.nms_iou, th.max_detections)
        return geom.to_source(boxes), scores

    sets = {
        "sources (val)": rel.split("val"),
        "detector_sources (val)": [r for r in rel.detector_extra() if r.split == "val"],
    }
    out = {}
    for name, recs in sets.items():
        per_image = []
        for path, boxes in sorted(group_by_image(recs).items()):
            pred, scores = detect(path)
            per_image.append((pred, scores, np.array([b.box for b in boxes], np.float32)))
        d = choose_detector_threshold(per_image)
        out[name] = {
            "images": len(per_image),
            "boxes": sum(len(t) for *_, t in per_image),
            "ap50": d.ap50,
            "recall": d.recall,
            "precision": d.precision,
        }
        print(f"{name}: {out[name]}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
