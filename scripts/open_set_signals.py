"""Which abstention signal refuses held-out drugs best: max probability, top-1/top-2 margin,
max logit or energy (log-sum-exp of the logits)?

Why a script: issue 10 asks for a second signal beside the calibrated probability; the
open-set experiment (``configs/experiments/open-set-3-soup.yaml``, three drugs held out of
training) is the only data where "a pill the model has never seen" is measured. Each signal
is compared at *equal known acceptance* (the same share of the known validation crops,
clean plus camera-shifted, accepted), so a signal cannot look better by refusing more of
everything.

    pillsnap-train calibrate --config configs/experiments/open-set-3-soup.yaml   # once
    python scripts/open_set_signals.py --config configs/experiments/open-set-3-soup.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.postprocess import calibrated_softmax
from pillsnap_train.calibrate import fit_temperature
from pillsnap_train.config import load_config
from pillsnap_train.release.crops import crop_batches, shifted_crop_batches
from pillsnap_train.release.data import ReleaseData
from pillsnap_train.release.engines import classifier_logits, ort_session

F = npt.NDArray[np.float32]


def signals(logits: F, temperature: float) -> dict[str, F]:
    """Higher = more sure it is a known drug, for every signal."""
    p = np.sort(calibrated_softmax(logits, temperature), axis=1)
    m = logits.max(axis=1, keepdims=True)
    energy = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    return {
        "max prob": p[:, -1],
        "margin": p[:, -1] - p[:, -2],
        "max logit": logits.max(axis=1),
        "energy": energy.astype(np.float32),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--levels", default="0.9,0.8,0.7,0.6", help="known acceptance levels")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    onnx = Path(cfg.work_dir) / "export" / "classifier.onnx"
    if not onnx.is_file():
        print(
            f"{onnx} missing: run pillsnap-train calibrate --config {args.config}", file=sys.stderr
        )
        return 2
    data = ReleaseData(cfg)
    sess = ort_session(onnx)
    x, y = crop_batches(data, "val")
    val_logits = classifier_logits(sess, x)
    sx, _ = shifted_crop_batches(data, "val")
    hx, hy = crop_batches(data, "holdout", holdout=True)
    t = fit_temperature(val_logits, y)
    known = signals(np.concatenate([val_logits, classifier_logits(sess, sx)]), t)
    held = signals(classifier_logits(sess, hx[hy < 0]), t)
    print(
        f"known crops {len(next(iter(known.values())))}, held-out-drug crops {int((hy < 0).sum())}"
    )
    print("held-out-drug crops refused when this share of known crops is accepted:")
    for level in (float(v) for v in args.levels.split(",")):
        cells = []
        for name, score in known.items():
            thr = float(np.quantile(score, 1.0 - level))
            cells.append(f"{name} {(held[name] < thr).mean():.3f}")
        print(f"  {level:.2f}: " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
