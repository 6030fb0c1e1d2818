"""Step ``calibrate``: temperature, abstention thresholds and the detector threshold.

All measured with the exported ONNX models through the SDK's stages on the validation
split (clean crops, camera-shifted crops, hold-out classes and pill-free background).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.image import load_image
from pillsnap_sdk.postprocess import calibrated_softmax, is_identified

from ..calibrate import (
    DetectorThreshold,
    abstention_report,
    choose_abstention,
    choose_detector_threshold,
    choose_unknown_threshold,
    expected_calibration_error,
    fit_temperature,
)
from .crops import background_batch, crop_batches, near_pill_batch, shifted_crop_batches
from .data import ReleaseData
from .engines import classifier_logits, detector_stage, ort_session
from .results import CalibrateResult, ExportResult

__all__ = ["calibrate", "detector_threshold"]


def calibrate(data: ReleaseData, exp: ExportResult) -> CalibrateResult:
    cc = data.cfg.calibration
    sess = ort_session(Path(exp.classifier))
    x, y = crop_batches(data, "val")
    logits = classifier_logits(sess, x)
    t = fit_temperature(logits, y)
    p1, pt = calibrated_softmax(logits, 1.0), calibrated_softmax(logits, t)
    hold_x, hold_y = crop_batches(data, "holdout", holdout=True)
    # Holdout photos also show known drugs (a table photo holds all of them): only the
    # pills of held-out classes (label -1) measure how often unknown drugs are refused.
    hold_x = hold_x[hold_y < 0]
    hold_p = calibrated_softmax(classifier_logits(sess, hold_x), t) if len(hold_x) else None
    unk = choose_unknown_threshold(pt, y, hold_p, target_accept=cc.target_known_accept)
    threshold, margin = unk.threshold, 0.0
    abstention: dict[str, Any] | None = None
    if cc.max_confident_wrong is not None:
        # Thresholds from clean *and* camera-shifted crops of the validation photos: a
        # rule that only holds on this camera's colours would not hold on another's.
        sx, sy = shifted_crop_batches(data, "val")
        sp = calibrated_softmax(classifier_logits(sess, sx), t) if len(sx) else pt[:0]
        both_p, both_y = np.concatenate([pt, sp]), np.concatenate([y, sy])
        ab = choose_abstention(both_p, both_y, max_wrong=cc.max_confident_wrong)
        threshold, margin = ab.threshold, ab.margin
        clean = abstention_report(pt, y, threshold, margin)
        shifted = abstention_report(sp, sy, threshold, margin)
        abstention = {"chosen_on": asdict(ab), "clean_val": clean, "shifted_val": shifted}
        if hold_p is not None:
            abstention["holdout_reject"] = float((~is_identified(hold_p, threshold, margin)).mean())

    def reject_rate(crops: npt.NDArray[np.float32]) -> float | None:
        """Share of pill-free ``crops`` the chosen rule calls unknown (None: no crops)."""
        if not len(crops):
            return None
        p = calibrated_softmax(classifier_logits(sess, crops), t)
        return float((~is_identified(p, threshold, margin)).mean())

    bg, near = background_batch(data), near_pill_batch(data)
    top = np.argsort(-pt, axis=1)
    per_class = []
    for i, c in enumerate(data.classes()):
        m = y == i
        per_class.append(
            {
                "code": c.code,
                "name": c.name,
                "n": int(m.sum()),
                "top1": float((top[m, 0] == i).mean()) if m.any() else None,
            }
        )
    result = CalibrateResult(
        temperature=t,
        ece_before=expected_calibration_error(p1, y),
        ece_after=expected_calibration_error(pt, y),
        unknown={**asdict(unk), "threshold": threshold, "margin": margin},
        abstention=abstention,
        background_reject=reject_rate(bg),
        n_background=len(bg),
        near_pill_reject=reject_rate(near),
        n_near_pill=len(near),
        val_top1=float((top[:, 0] == y).mean()) if len(y) else 0.0,
        val_top5=float((top[:, :5] == y[:, None]).any(1).mean()) if len(y) else 0.0,
        per_class=per_class,
    )
    if exp.detector is not None:
        result.detector = asdict(detector_threshold(data, Path(exp.detector)))
    return result


def detector_threshold(data: ReleaseData, onnx_path: Path) -> DetectorThreshold:
    """Threshold by max F-beta (``calibration.detector_recall_weight``; 1: F1) on every
    detector validation photo (detector_sources too).

    Candidates are every box above confidence 0.01 after the release's NMS, in source
    pixels, unfiltered by size.
    """
    stage = detector_stage(data.cfg, ort_session(onnx_path))
    cc = data.cfg.calibration
    per_image = []
    for path, boxes in data.det_items("val"):
        pred, scores = stage(
            load_image(path), confidence=0.01, nms_iou=cc.nms_iou, max_detections=cc.max_detections
        )
        per_image.append((pred, scores, np.array(boxes, np.float32).reshape(-1, 4)))
    return choose_detector_threshold(per_image, recall_weight=cc.detector_recall_weight)
