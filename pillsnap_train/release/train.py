"""Steps ``train-classifier`` and ``train-detector``.

The detector can train in a spawned process beside the classifier
(``parallel_training``; see :mod:`.run`); either way this is the code that trains it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .data import ReleaseData
from .results import TrainClassifierResult, TrainDetectorResult

__all__ = ["train_classifier", "train_detector"]


def train_classifier(data: ReleaseData) -> TrainClassifierResult:
    from ..classifier.train import train_classifier as train

    cfg = data.cfg
    res = train(
        data.samples("train", cfg.classifier.whole_photo),
        data.samples("val", False),
        len(data.classes()),
        data.work / "classifier",
        cfg.classifier,
    )
    return TrainClassifierResult(
        best=str(res.best_checkpoint), best_val_top1=res.best_top1, history=res.history
    )


def train_detector(data: ReleaseData) -> TrainDetectorResult:
    """Build the YOLO dataset (real photos, synthetic scenes, piles) and train; a
    low-lr fine-tune stage follows from the first stage's best weights when configured."""
    dc = data.cfg.detector
    if not dc.enabled:
        return TrainDetectorResult(enabled=False)
    from ..detector.dataset import build_detector_dataset

    data_dir = data.work / "detector" / "dataset"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    yaml_path = build_detector_dataset(
        data_dir,
        data.det_items("train"),
        data.det_items("val"),
        synth_scenes=dc.synth_scenes,
        pile_scenes=dc.pile_scenes,
        seed=data.cfg.seed,
        photometric_fraction=dc.photometric_fraction,
    )
    if dc.threads:
        from ..torch_compat import ensure_torchvision

        ensure_torchvision()
        import torch

        torch.set_num_threads(dc.threads)
    best = _detector_stage(data, yaml_path, "train", dc.epochs)
    if dc.finetune_epochs > 0:  # low-lr second stage from the first stage's weights
        best = _detector_stage(
            data,
            yaml_path,
            "finetune",
            dc.finetune_epochs,
            init_weights=best,
            lr0=dc.finetune_lr0,
        )
    return TrainDetectorResult(enabled=True, best=str(best))


def _detector_stage(
    data: ReleaseData, data_yaml: Path, name: str, epochs: int, **stage: Any
) -> Path:
    """One Ultralytics run under ``detector/<name>``; a finished run is reused on resume."""
    from ..detector.train import train_detector as train

    dc = data.cfg.detector
    return Path(
        train(
            data_yaml,
            data.work / "detector" / name,
            model=dc.model,
            imgsz=dc.imgsz,
            epochs=epochs,
            batch=dc.batch,
            seed=data.cfg.seed,
            workers=dc.workers,
            resume=True,
            cache="ram",
            augment=dc.extra or None,
            **stage,
        )
    )
