"""Step ``export``: the best checkpoints -> ``export/classifier.onnx`` (+ ``detector.onnx``)."""

from __future__ import annotations

from pathlib import Path

from .data import ReleaseData
from .results import ExportResult, TrainClassifierResult, TrainDetectorResult

__all__ = ["export"]


def export(
    data: ReleaseData, classifier: TrainClassifierResult, detector: TrainDetectorResult
) -> ExportResult:
    from ..classifier.train import load_trained
    from ..export.onnx_export import export_classifier_onnx

    out = data.work / "export"
    model, ccfg = load_trained(Path(classifier.best))
    export_classifier_onnx(model, out / "classifier.onnx", ccfg.img_size)
    result = ExportResult(classifier=str(out / "classifier.onnx"))
    if detector.enabled and detector.best:
        from ..detector.export import export_detector_onnx

        export_detector_onnx(
            Path(detector.best), out / "detector.onnx", imgsz=data.cfg.detector.imgsz
        )
        result.detector = str(out / "detector.onnx")
    return result
