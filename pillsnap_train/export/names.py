"""The ONNX input and output names of the exported models: one place for exporter,
release steps, variants and the bundle manifest (the SDK reads them from the manifest)."""

from __future__ import annotations

__all__ = ["CLASSIFIER_INPUT", "CLASSIFIER_OUTPUT", "DETECTOR_INPUT"]

CLASSIFIER_INPUT = "input"
CLASSIFIER_OUTPUT = "logits"
#: Ultralytics' exporter names the detector's input ``images``.
DETECTOR_INPUT = "images"
