"""Right vs wrong names of a bundle's classifier on validation crops (clean and camera-shifted)
at several wrong-name budgets, with the release's own abstention chooser.

    python scripts/abstention_curve.py CONFIG BUNDLE_DIR

Needs the config's work_dir with ``ingest`` done. Prints, per budget, the chosen threshold
and the named/right/wrong rates on clean and on shifted crops, then the most confident
mistakes. Used for docs/accuracy-2.0.md ("2.2.0 candidate").
"""

import json
import sys
from pathlib import Path

import numpy as np

from pillsnap_sdk.postprocess import calibrated_softmax
from pillsnap_train.calibrate import abstention_report, choose_abstention
from pillsnap_train.config import load_config
from pillsnap_train.release.crops import crop_batches, shifted_crop_batches
from pillsnap_train.release.data import ReleaseData
from pillsnap_train.release.engines import classifier_logits, ort_session

cfg = load_config(sys.argv[1])
data = ReleaseData(cfg)
sess = ort_session(Path(sys.argv[2]) / "classifier.onnx")
T = json.loads((Path(sys.argv[2]) / "manifest.json").read_text())["thresholds"]["temperature"]
x, y = crop_batches(data, "val")
sx, sy = shifted_crop_batches(data, "val")
p = calibrated_softmax(classifier_logits(sess, x), T)
sp = calibrated_softmax(classifier_logits(sess, sx), T)
print(
    "clean top1",
    (p.argmax(1) == y).mean(),
    "shifted top1",
    (sp.argmax(1) == sy).mean(),
    len(y),
    len(sy),
)
bp, by = np.concatenate([p, sp]), np.concatenate([y, sy])
for mw in [0.005, 0.0075, 0.01, 0.015, 0.02, 0.03]:
    ab = choose_abstention(bp, by, max_wrong=mw)
    c = abstention_report(p, y, ab.threshold, ab.margin)
    s = abstention_report(sp, sy, ab.threshold, ab.margin)
    print(
        mw,
        round(ab.threshold, 4),
        round(ab.margin, 3),
        {k: round(v, 3) for k, v in c.items() if isinstance(v, float)},
        {k: round(v, 3) for k, v in s.items() if isinstance(v, float)},
    )
# the wrong crops with highest confidence
wrong = bp.argmax(1) != by
conf = bp.max(1)
idx = np.argsort(-conf * wrong)[:12]
names = [c.code for c in data.classes()]
for i in idx:
    print(
        round(float(conf[i]), 4),
        "true",
        names[by[i]],
        "pred",
        names[bp[i].argmax()],
        "clean" if i < len(y) else "shifted",
    )
