"""The trained models as SDK runners: exported ONNX files and torch checkpoints.

Why here: calibration, variants and the parity checks measure models that are not in a
bundle yet. They run them through the SDK's own stages (:mod:`pillsnap_sdk.stages`), so
the preprocessing, chunking and YOLO decoding measured are the ones that ship; only the
runner (onnxruntime session or :class:`~pillsnap_train.evaluate.TorchRunner`) differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.stages import ClassifierStage, DetectorStage, Runner

from ..config import ReleaseConfig
from ..export.names import CLASSIFIER_INPUT, DETECTOR_INPUT
from .crops import detector_spec

__all__ = [
    "LOGIT_BATCH",
    "classifier_logits",
    "detector_stage",
    "load_yolo_module",
    "ort_session",
]

F32 = npt.NDArray[np.float32]
#: Crops per classifier run when measuring (as the release always has: the logits, and so
#: the calibrated thresholds, are reproduced bit for bit).
LOGIT_BATCH = 64


def ort_session(path: Path) -> Any:
    """A plain CPU onnxruntime session over an exported model file."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def classifier_logits(runner: Runner, x: F32) -> F32:
    """Logits of preprocessed crops through the SDK's classifier stage."""
    return ClassifierStage(runner, CLASSIFIER_INPUT, chunk=LOGIT_BATCH).logits(x)


def detector_stage(cfg: ReleaseConfig, runner: Runner) -> DetectorStage:
    """The SDK's detector stage with this release's letterbox."""
    return DetectorStage(runner, DETECTOR_INPUT, detector_spec(cfg))


def load_yolo_module(weights: Path) -> Any:
    """The trained Ultralytics detector as a float torch module in eval mode."""
    from ..torch_compat import ensure_torchvision

    ensure_torchvision()
    from ultralytics import YOLO  # type: ignore[attr-defined]

    module: Any = YOLO(str(weights)).model
    return module.float().eval()
