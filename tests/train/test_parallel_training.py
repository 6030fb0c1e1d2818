"""``parallel_training``: the detector trains in a side process while the classifier trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pillsnap_train.cli import main

from .conftest import TINY_DETECTOR, make_sources, release_config, write_config

pytestmark = pytest.mark.e2e


def test_both_models_train_and_the_detector_logs_to_its_file(tmp_path: Path) -> None:
    aihub, yolo = make_sources(tmp_path)
    cfg = release_config(tmp_path, aihub=aihub, yolo=yolo, parallel_training=True)
    cfg["classifier"] = {**cfg["classifier"], "epochs": 1}
    cfg["detector"] = {**TINY_DETECTOR, "finetune_epochs": 0, "threads": 1}
    path = write_config(tmp_path / "release.yaml", cfg)
    assert main(["train-detector", "--config", str(path)]) == 0
    work = tmp_path / "work"
    cls = json.loads((work / "steps" / "train-classifier.json").read_text())
    det = json.loads((work / "steps" / "train-detector.json").read_text())
    assert Path(cls["best"]).is_file() and Path(det["best"]).is_file()
    log = (work / "detector" / "train.log").read_text(errors="replace")
    assert "train-detector: running" in log  # the side process wrote its own log


def test_a_failed_side_process_blocks_the_release(tmp_path: Path) -> None:
    aihub, yolo = make_sources(tmp_path)
    cfg = release_config(tmp_path, aihub=aihub, yolo=yolo, parallel_training=True)
    cfg["classifier"] = {**cfg["classifier"], "epochs": 1}
    # A detector config Ultralytics cannot build: the side process fails, the parent says so.
    cfg["detector"] = {**TINY_DETECTOR, "model": "no-such-model.yaml", "finetune_epochs": 0}
    path = write_config(tmp_path / "release.yaml", cfg)
    assert main(["train-detector", "--config", str(path)]) == 1
    assert not (tmp_path / "work" / "steps" / "train-detector.json").exists()
