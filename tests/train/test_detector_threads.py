"""Detector training threads: every core once the classifier beside it has finished.

Ultralytics pins CPU training to ``cpu_count - 1`` threads, so on a 2-core box one core
idled for the ~50 min the detector trained alone (measured: 5.3 -> 2.7 s per batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import pillsnap_train.detector.train as det_train  # noqa: E402
import pillsnap_train.release.train as rel_train  # noqa: E402
from pillsnap_train.config import load_config  # noqa: E402
from pillsnap_train.release.data import ReleaseData  # noqa: E402
from pillsnap_train.release.train import _detector_threads  # noqa: E402
from pillsnap_train.release.workdir import step_marker  # noqa: E402

from .conftest import make_sources, release_config, write_config  # noqa: E402


def _data(tmp_path: Path, **over: Any) -> ReleaseData:
    aihub, yolo = make_sources(tmp_path)
    raw = release_config(tmp_path, aihub=aihub, yolo=yolo, **over)
    data = ReleaseData(load_config(write_config(tmp_path / "release.yaml", raw)))
    assert data.work.is_relative_to(tmp_path)
    return data


def test_threads_follow_the_classifier_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rel_train, "available_cpus", lambda: 2)
    data = _data(tmp_path, parallel_training=True)
    threads = _detector_threads(data)
    assert callable(threads) and threads() == 1  # the classifier has the other core
    marker = step_marker(data.work, "train-classifier")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("{}")
    assert threads() == 2  # ... and frees it when its step is done


def test_threads_alone_or_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rel_train, "available_cpus", lambda: 2)
    assert _detector_threads(_data(tmp_path / "a", parallel_training=False)) == 2
    fixed = _data(tmp_path / "b", parallel_training=True)
    fixed.cfg.detector.threads = 3
    assert _detector_threads(fixed) == 3


def test_train_detector_sets_threads_at_every_epoch_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The callback is registered on the YOLO object and asks ``threads`` each time."""
    seen: list[int] = []

    class FakeYOLO:
        def __init__(self, weights: str) -> None:
            self.callbacks: list[Any] = []

        def add_callback(self, event: str, fn: Any) -> None:
            assert event == "on_train_epoch_start"
            self.callbacks.append(fn)

        def train(self, **args: Any) -> None:
            torch.set_num_threads(1)  # what Ultralytics' select_device does on 2 cores
            for _epoch in range(2):
                for fn in self.callbacks:
                    fn(None)
                seen.append(torch.get_num_threads())
            weights = Path(args["project"]) / args["name"] / "weights"
            weights.mkdir(parents=True)
            (weights / "last.pt").write_bytes(b"x")

    class FakeUltralytics:
        YOLO = FakeYOLO

    monkeypatch.setattr(det_train, "prepare_ultralytics_offline", lambda: None)
    monkeypatch.setattr(det_train, "_module", lambda name: FakeUltralytics)
    asked = iter([2, 1])
    before = torch.get_num_threads()
    try:
        out = det_train.train_detector(
            tmp_path / "d.yaml", tmp_path / "run", threads=lambda: next(asked)
        )
    finally:
        torch.set_num_threads(before)
    assert out.name == "last.pt" and seen == [2, 1]
