"""Step ``export``: the best checkpoints -> ``export/classifier.onnx`` (+ ``detector.onnx``),
the classifier with its familiarity gate when ``calibration.familiarity_keep`` is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import ReleaseData
from .results import ExportResult, TrainClassifierResult, TrainDetectorResult

__all__ = ["export", "release_classifier"]

FAMILIARITY_FILE = "familiarity.npz"


def export(
    data: ReleaseData, classifier: TrainClassifierResult, detector: TrainDetectorResult
) -> ExportResult:
    from ..classifier.train import load_trained
    from ..export.onnx_export import export_classifier_onnx

    out = data.work / "export"
    out.mkdir(parents=True, exist_ok=True)
    (out / FAMILIARITY_FILE).unlink(missing_ok=True)
    model, _ = load_trained(Path(classifier.best))
    familiarity = None
    if data.cfg.calibration.familiarity_keep is not None:
        familiarity = _fit_familiarity(data, model.eval(), out / FAMILIARITY_FILE)
    model = _gated(data, model)
    export_classifier_onnx(model, out / "classifier.onnx", data.cfg.classifier.img_size)
    result = ExportResult(classifier=str(out / "classifier.onnx"), familiarity=familiarity)
    if detector.enabled and detector.best:
        from ..detector.export import export_detector_onnx

        export_detector_onnx(
            Path(detector.best), out / "detector.onnx", imgsz=data.cfg.detector.imgsz
        )
        result.detector = str(out / "detector.onnx")
    return result


def release_classifier(data: ReleaseData, best: Path) -> Any:
    """The trained classifier as the release exports it: wrapped in its familiarity gate
    when the export step fitted one (the parity checks compare against this module)."""
    from ..classifier.train import load_trained

    model, _ = load_trained(best)
    return _gated(data, model)


def _gated(data: ReleaseData, model: Any) -> Any:
    """``model`` (eval) in the familiarity gate the export step fitted, if it fitted one."""
    from ..classifier.familiarity import FamiliarClassifier, load_familiarity

    stats = data.work / "export" / FAMILIARITY_FILE
    if data.cfg.calibration.familiarity_keep is not None and stats.is_file():
        model = FamiliarClassifier(model, load_familiarity(stats))
    return model.eval()


def _fit_familiarity(data: ReleaseData, model: Any, dst: Path) -> dict[str, Any]:
    """Fit the gate on the training crops' pooled features, cut on the validation crops
    (clean and camera-shifted, as the abstention thresholds are chosen)."""
    import numpy as np
    import torch

    from ..classifier.familiarity import fit_familiarity, pooled_features
    from .crops import crop_batches, shifted_crop_batches

    def feats(x: Any) -> Any:
        with torch.no_grad():
            parts = [pooled_features(model, torch.from_numpy(x[i : i + 64])).numpy()
                     for i in range(0, len(x), 64)]  # fmt: skip
        return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)

    x_tr, y_tr = crop_batches(data, "train")
    x_va, _ = crop_batches(data, "val")
    x_sh, _ = shifted_crop_batches(data, "val")
    keep = data.cfg.calibration.familiarity_keep
    assert keep is not None
    stats = fit_familiarity(feats(x_tr), y_tr, feats(np.concatenate([x_va, x_sh])), keep=keep)
    stats.save(dst)
    return {"file": str(dst), "lo": stats.lo, "hi": stats.hi, "keep": keep,
            "n_train": len(y_tr), "n_known": len(x_va) + len(x_sh)}  # fmt: skip
