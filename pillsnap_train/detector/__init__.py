"""Pill detector: dataset build, offline Ultralytics training, ONNX export.

Submodules: :mod:`.dataset` (torch-free), :mod:`.train` and :mod:`.export` (import torch and
Ultralytics). Names are re-exported lazily so ``import pillsnap_train.detector`` stays cheap
and never imports Ultralytics until training or export is actually asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dataset import DetItem, build_detector_dataset
    from .export import DetectorOnnxMeta, detector_onnx_metadata, export_detector_onnx
    from .train import DEFAULT_AUGMENT, prepare_ultralytics_offline, train_detector

__all__ = [
    "DEFAULT_AUGMENT",
    "DetItem",
    "DetectorOnnxMeta",
    "build_detector_dataset",
    "detector_onnx_metadata",
    "export_detector_onnx",
    "prepare_ultralytics_offline",
    "train_detector",
]

_WHERE = {
    "DetItem": ".dataset",
    "build_detector_dataset": ".dataset",
    "DetectorOnnxMeta": ".export",
    "detector_onnx_metadata": ".export",
    "export_detector_onnx": ".export",
    "DEFAULT_AUGMENT": ".train",
    "prepare_ultralytics_offline": ".train",
    "train_detector": ".train",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
