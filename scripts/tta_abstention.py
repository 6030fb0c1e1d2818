"""Does test-time augmentation name more pills right at the same bounded wrong-name rate?

Why a script: a classifier's abstention rule (issue 10) trades right names for "unknown" to
keep confidently-wrong names at ``calibration.max_confident_wrong``. Averaging the logits of
flipped and rotated copies of each crop could make right answers surer and wrong ones less
sure, so more pills would pass the threshold at the same wrong rate, at k times the
classifier's cost. Each view set gets its own temperature and threshold chosen exactly as
the release's calibrate step does (clean and camera-shifted validation crops together), and
the script prints the shares named right and wrong for each set.

    pillsnap-train calibrate --config configs/pushin-pill-edge.yaml   # once (export/)
    python scripts/tta_abstention.py --config configs/pushin-pill-edge.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.postprocess import calibrated_softmax
from pillsnap_train.calibrate import abstention_report, choose_abstention, fit_temperature
from pillsnap_train.config import load_config
from pillsnap_train.release.crops import crop_batches, shifted_crop_batches
from pillsnap_train.release.data import ReleaseData
from pillsnap_train.release.engines import classifier_logits, ort_session

F = npt.NDArray[np.float32]

#: The dihedral views of an NCHW batch (a pill has no up or left).
VIEWS: dict[str, Callable[[F], F]] = {
    "id": lambda a: a,
    "h": lambda a: a[..., ::-1],
    "v": lambda a: a[..., ::-1, :],
    "r90": lambda a: np.rot90(a, 1, axes=(2, 3)),
    "r180": lambda a: np.rot90(a, 2, axes=(2, 3)),
    "r270": lambda a: np.rot90(a, 3, axes=(2, 3)),
    "hr90": lambda a: np.rot90(a[..., ::-1], 1, axes=(2, 3)),
    "hr270": lambda a: np.rot90(a[..., ::-1], 3, axes=(2, 3)),
}
SETS = {
    "none": ["id"],
    "h-flip": ["id", "h"],
    "4 flips": ["id", "h", "v", "r180"],
    "4 rotations": ["id", "r90", "r180", "r270"],
    "all 8": list(VIEWS),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--onnx", type=Path, help="classifier (default: work_dir/export)")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    onnx = args.onnx or Path(cfg.work_dir) / "export" / "classifier.onnx"
    if not onnx.is_file():
        print(
            f"{onnx} missing: run pillsnap-train calibrate --config {args.config}", file=sys.stderr
        )
        return 2
    max_wrong = cfg.calibration.max_confident_wrong or 0.005
    data = ReleaseData(cfg)
    sess = ort_session(onnx)
    x, y = crop_batches(data, "val")
    sx, sy = shifted_crop_batches(data, "val")
    print(f"clean crops {len(y)}, shifted crops {len(sy)}, wrong-name bound {max_wrong}")
    logits = {
        k: (
            classifier_logits(sess, np.ascontiguousarray(f(x))),
            classifier_logits(sess, np.ascontiguousarray(f(sx))),
        )
        for k, f in VIEWS.items()
    }
    for name, keys in SETS.items():
        lc = np.mean([logits[k][0] for k in keys], axis=0)
        ls = np.mean([logits[k][1] for k in keys], axis=0)
        t = fit_temperature(lc, y)
        pc, ps = calibrated_softmax(lc, t), calibrated_softmax(ls, t)
        ab = choose_abstention(
            np.concatenate([pc, ps]), np.concatenate([y, sy]), max_wrong=max_wrong
        )
        clean = abstention_report(pc, y, ab.threshold, ab.margin)
        shifted = abstention_report(ps, sy, ab.threshold, ab.margin)
        row = {
            "views": name,
            "temperature": round(t, 3),
            "threshold": ab.threshold,
            "top1_clean": round(float((pc.argmax(1) == y).mean()), 4),
            "right_clean": round(clean["right_rate"], 4),
            "wrong_clean": round(clean["wrong_rate"], 4),
            "right_shifted": round(shifted["right_rate"], 4),
            "wrong_shifted": round(shifted["wrong_rate"], 4),
        }
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
