"""Steps ``train-classifier`` and ``train-detector``.

The detector can train in a spawned process beside the classifier
(``parallel_training``; see :mod:`.run`); either way this is the code that trains it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pillsnap_sdk.batch.pool import available_cpus

from .data import ReleaseData
from .results import TrainClassifierResult, TrainDetectorResult
from .workdir import step_marker

__all__ = ["train_classifier", "train_detector"]


def train_classifier(data: ReleaseData) -> TrainClassifierResult:
    from ..classifier.soup import train_soup
    from ..classifier.train import train_classifier

    cfg = data.cfg
    samples = data.samples("train", cfg.classifier.whole_photo)
    negatives: list[Any] = []
    if cfg.classifier.negatives > 0:
        pills = sum(1 for s in samples if s.box is not None)
        negatives = data.negative_samples("train", round(cfg.classifier.negatives * pills))
    train = train_soup if cfg.classifier.soup else train_classifier
    res = train(
        samples + negatives,
        data.samples("val", False),
        len(data.classes()),
        data.work / "classifier",
        cfg.classifier,
    )
    return TrainClassifierResult(
        best=str(res.best_checkpoint),
        best_val_top1=res.best_top1,
        history=res.history,
        negatives=len(negatives),
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
    best = _detector_stage(data, yaml_path, "train", dc.epochs)
    stages = {"train": _best_ap50(data.work / "detector" / "train")}
    more = [(dc.finetune_epochs, dc.finetune_lr0)] if dc.finetune_epochs > 0 else []
    more += [(st.epochs, st.lr0) for st in dc.extra_stages]
    kept = "train"
    for k, (epochs, lr0) in enumerate(more):  # low-lr stages from the best weights so far
        name = "finetune" if k == 0 else f"finetune{k + 1}"
        tuned = _detector_stage(data, yaml_path, name, epochs, init_weights=best, lr0=lr0)
        stages[name] = _best_ap50(data.work / "detector" / name)
        # A first stage still improving when its budget ends can lose points to the
        # next stage's warm-up; never ship the worse (by AP@0.5, the IoU the release
        # scores pills at).
        if stages[name] >= stages[kept]:
            best, kept = tuned, name
    return TrainDetectorResult(enabled=True, best=str(best), stage_ap50=stages, kept_stage=kept)


def _best_ap50(run_dir: Path) -> float:
    """Validation mAP@0.5 of the epoch an Ultralytics run kept as ``best.pt`` (the epoch of
    highest fitness, 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95), from its ``results.csv``; -1 if none."""
    import csv

    path = run_dir / "results.csv"
    if not path.is_file():
        return -1.0
    with path.open(newline="") as fh:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(fh)]
    scored = [
        (0.1 * float(r["metrics/mAP50(B)"]) + 0.9 * float(r["metrics/mAP50-95(B)"]),
         float(r["metrics/mAP50(B)"]))
        for r in rows
        if r.get("metrics/mAP50(B)") and r.get("metrics/mAP50-95(B)")
    ]  # fmt: skip
    return max(scored)[1] if scored else -1.0


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
            threads=_detector_threads(data),
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


def _detector_threads(data: ReleaseData) -> int | Callable[[], int]:
    """``detector.threads`` if set; else, beside a classifier training in parallel, one
    core fewer than the machine until that classifier's step marker exists, then all
    (asked at every epoch's start: the cores the classifier frees are used at once)."""
    dc = data.cfg.detector
    if dc.threads:
        return dc.threads
    if not data.cfg.parallel_training:
        return available_cpus()
    marker = step_marker(data.work, "train-classifier")

    def threads() -> int:
        n = available_cpus()
        return n if marker.is_file() else max(1, n - 1)

    return threads
