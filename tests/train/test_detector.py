"""Detector: dataset build, one tiny offline training run, ONNX export, network guard.

One module-scoped run trains yolo11n for one epoch at 64 px on CPU *under a network guard*
(every socket connect / DNS lookup and any ``pip install`` subprocess is refused and
recorded), then exports ONNX; the tests read that run's outputs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from pillsnap_train.data.synth import SynthConfig
from pillsnap_train.detector.dataset import build_detector_dataset

IMGSZ = 64


class _Guard:
    """Refuse and record outgoing network use and package installs."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def trip(self, what: str) -> None:
        self.attempts.append(what)
        raise OSError(errno.ENETUNREACH, f"network disabled in this test: {what}")

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Guard]:
        real_connect = socket.socket.connect
        real_popen_init = subprocess.Popen.__init__

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family == socket.AF_UNIX:  # local IPC (DataLoader workers) is fine
                return real_connect(sock, address)
            self.trip(f"connect {address!r}")

        def connect_ex(sock: socket.socket, address: Any) -> int:
            self.trip(f"connect_ex {address!r}")
            return errno.ENETUNREACH  # pragma: no cover

        def create_connection(address: Any, *a: Any, **k: Any) -> socket.socket:
            self.trip(f"create_connection {address!r}")
            raise AssertionError  # pragma: no cover

        def getaddrinfo(host: Any, port: Any, *a: Any, **k: Any) -> list[Any]:
            self.trip(f"getaddrinfo {host!r}")
            return []  # pragma: no cover

        def popen_init(proc: subprocess.Popen[Any], args: Any, *a: Any, **k: Any) -> None:
            text = " ".join(map(str, args)) if isinstance(args, list | tuple) else str(args)
            if "install" in text and ("pip" in text or "uv" in text):
                self.trip(f"subprocess {text!r}")
            real_popen_init(proc, args, *a, **k)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(socket.socket, "connect", connect)
            mp.setattr(socket.socket, "connect_ex", connect_ex)
            mp.setattr(socket, "create_connection", create_connection)
            mp.setattr(socket, "getaddrinfo", getaddrinfo)
            mp.setattr(subprocess.Popen, "__init__", popen_init)
            yield self


def _write_photos(root: Path, n: int) -> list[tuple[str, list[tuple[float, float, float, float]]]]:
    """Tiny 'photos': 1-2 coloured pills on a noisy grey table, as PNG files."""
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        img = np.clip(rng.normal(150, 8, (96, 128, 3)), 0, 255).astype(np.uint8)
        boxes = []
        for k in range(1 + i % 2):
            cx, cy = 30 + 60 * k + int(rng.integers(-5, 6)), 48 + int(rng.integers(-10, 11))
            ax, ay = int(rng.integers(10, 16)), int(rng.integers(7, 11))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, colour, -1, cv2.LINE_AA)
            boxes.append((cx - ax - 1.0, cy - ay - 1.0, cx + ax + 2.0, cy + ay + 2.0))
        path = root / f"photo_{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        items.append((str(path), boxes))
    return items


TINY_SYNTH = SynthConfig(width=96, height=96, n_pills=(2, 5), pill_size=(0.12, 0.3))


@dataclass
class Run:
    data_yaml: Path
    train_dir: Path
    best: Path
    onnx: Path
    attempts: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    from pillsnap_train.detector.export import export_detector_onnx
    from pillsnap_train.detector.train import train_detector

    tmp = tmp_path_factory.mktemp("det")
    items = _write_photos(tmp / "photos", 8)
    data_yaml = build_detector_dataset(
        tmp / "ds", items[:6], items[6:], synth_scenes=6, synth_cfg=TINY_SYNTH, seed=1
    )
    guard = _Guard()
    with guard.installed():
        best = train_detector(
            data_yaml, tmp / "train", imgsz=IMGSZ, epochs=1, batch=8, workers=0, seed=0
        )
        onnx_path = export_detector_onnx(best, tmp / "export" / "detector.onnx", imgsz=IMGSZ)
    return Run(data_yaml, tmp / "train", best, onnx_path, guard.attempts)


# --------------------------------------------------------------------------- dataset


def test_dataset_layout_and_labels(tmp_path: Path) -> None:
    items = _write_photos(tmp_path / "photos", 5)
    items[0] = (items[0][0], [*items[0][1], (-10.0, -10.0, 0.5, 0.5), (120.0, 90.0, 200.0, 200.0)])
    data_yaml = build_detector_dataset(
        tmp_path / "ds", items[:4], items[4:], synth_scenes=3, synth_cfg=TINY_SYNTH, seed=0
    )
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == {0: "pill"} and data["nc"] == 1
    train_imgs = Path(data["train"])
    val_imgs = Path(data["val"])
    assert train_imgs.is_absolute() and val_imgs.is_absolute()
    names = sorted(p.name for p in train_imgs.iterdir())
    assert names == [f"photo_{i}.png" for i in range(4)] + [f"synth_00000{i}.jpg" for i in range(3)]
    assert sorted(p.name for p in val_imgs.iterdir()) == ["photo_4.png"]  # no synth in val
    assert (train_imgs / "photo_0.png").resolve() == Path(items[0][0]).resolve()
    # photo_0: its pill + a box clipped to a sliver (dropped) + one clipped at the corner.
    rows = [
        list(map(float, r.split()))
        for r in (train_imgs.parent / "labels" / "photo_0.txt").read_text().splitlines()
    ]
    assert len(rows) == 2 and {r[0] for r in rows} == {0.0}
    x1, y1, x2, y2 = items[0][1][0]
    assert rows[0][1:] == pytest.approx(
        [(x1 + x2) / 2 / 128, (y1 + y2) / 2 / 96, (x2 - x1) / 128, (y2 - y1) / 96], abs=1e-5
    )
    assert rows[1][1:] == pytest.approx([124 / 128, 93 / 96, 8 / 128, 6 / 96], abs=1e-5)
    synth_rows = (train_imgs.parent / "labels" / "synth_000000.txt").read_text().splitlines()
    assert 2 <= len(synth_rows) <= 5 and all(r.startswith("0 ") for r in synth_rows)


def test_dataset_file_names_never_collide(tmp_path: Path) -> None:
    a = _write_photos(tmp_path / "a", 2)
    b = _write_photos(tmp_path / "b", 1)  # photo_0.png again, from another folder
    synth_named = tmp_path / "c" / "synth_000000.png"
    synth_named.parent.mkdir()
    synth_named.write_bytes(Path(a[1][0]).read_bytes())
    items = [a[0], b[0], (str(synth_named), a[1][1])]
    data_yaml = build_detector_dataset(
        tmp_path / "ds", items, [a[1]], synth_scenes=1, synth_cfg=TINY_SYNTH
    )
    train = Path(yaml.safe_load(data_yaml.read_text())["train"])
    assert sorted(p.name for p in train.iterdir()) == [
        "photo_0.png",
        "photo_0__1.png",
        "real_synth_000000.png",
        "synth_000000.jpg",
    ]
    assert len(list((train.parent / "labels").glob("*.txt"))) == 4


def test_photometric_fraction_rewrites_train_photos_only(tmp_path: Path) -> None:
    items = _write_photos(tmp_path / "photos", 5)
    plain = build_detector_dataset(tmp_path / "a", items[:4], items[4:])
    shifted = build_detector_dataset(
        tmp_path / "b", items[:4], items[4:], photometric_fraction=1.0, seed=3
    )
    half = build_detector_dataset(
        tmp_path / "c", items[:4], items[4:], photometric_fraction=0.5, seed=3
    )
    a, b = plain.parent / "train", shifted.parent / "train"
    # Every train photo is a new JPEG with the same size and the very same labels.
    assert sorted(p.name for p in (b / "images").iterdir()) == [f"photo_{i}.jpg" for i in range(4)]
    for i in range(4):
        new = cv2.imread(str(b / "images" / f"photo_{i}.jpg"))
        old = cv2.imread(str(a / "images" / f"photo_{i}.png"))
        assert not (b / "images" / f"photo_{i}.jpg").is_symlink()
        assert new.shape == old.shape and np.abs(new.astype(int) - old.astype(int)).mean() > 1
        assert (b / "labels" / f"photo_{i}.txt").read_text() == (
            a / "labels" / f"photo_{i}.txt"
        ).read_text()
    # Validation is never shifted.
    assert (shifted.parent / "val" / "images" / "photo_4.png").is_symlink()
    info = json.loads((shifted.parent / "dataset_info.json").read_text())
    assert info["train_photometric_shifted"] == 4
    n_half = json.loads((half.parent / "dataset_info.json").read_text())
    assert 0 <= n_half["train_photometric_shifted"] <= 4
    assert (
        len(list((half.parent / "train" / "images").glob("*.jpg")))
        == n_half["train_photometric_shifted"]
    )
    with pytest.raises(ValueError, match="photometric_fraction"):
        build_detector_dataset(tmp_path / "d", items[:4], items[4:], photometric_fraction=1.5)


def test_dataset_refuses_leaks_and_overwrites(tmp_path: Path) -> None:
    items = _write_photos(tmp_path / "photos", 3)
    with pytest.raises(ValueError, match="both train and val"):
        build_detector_dataset(tmp_path / "a", items[:2], items[1:])
    with pytest.raises(ValueError, match="val_items is empty"):
        build_detector_dataset(tmp_path / "b", items, [])
    build_detector_dataset(tmp_path / "c", items[:2], items[2:])
    with pytest.raises(ValueError, match="exists"):
        build_detector_dataset(tmp_path / "c", items[:2], items[2:])


# --------------------------------------------------------------------------- training + export


def test_training_writes_checkpoints(run: Run) -> None:
    assert run.best.is_file() and run.best.parent == run.train_dir / "weights"
    assert (run.train_dir / "weights" / "last.pt").is_file()
    assert (run.train_dir / "results.csv").is_file()


def test_no_network_or_install_attempted(run: Run) -> None:
    assert run.attempts == [], run.attempts


def test_onnx_contract_and_runs(run: Run) -> None:
    import onnxruntime as ort

    from pillsnap_train.detector.export import detector_onnx_metadata

    meta = detector_onnx_metadata(run.onnx)
    assert meta.input_name == "images"
    assert meta.input_shape == (1, 3, IMGSZ, IMGSZ)
    anchors = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
    assert meta.output_shape == (1, 5, anchors)
    assert meta.num_classes == 1
    assert meta.opset == 17
    assert not any(p.suffix != ".onnx" for p in run.onnx.parent.iterdir())  # single file

    sess = ort.InferenceSession(str(run.onnx), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "images" and list(inp.shape) == [1, 3, IMGSZ, IMGSZ]
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    (out,) = sess.run(None, {"images": x})
    assert out.shape == (1, 5, anchors)
    assert np.isfinite(out).all()
    scores = out[0, 4]
    assert scores.min() >= 0 and scores.max() <= 1  # sigmoid scores, no NMS in the graph
    wh = out[0, 2:4]
    assert (wh >= 0).all()


def test_resume_of_a_finished_run_returns_its_weights(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished run is returned as it is: no trainer is even started (no timing needed)."""
    from ultralytics.engine.model import Model

    from pillsnap_train.detector.train import train_detector

    started: list[object] = []

    def no_training(self: Any, *args: Any, **kwargs: Any) -> None:
        started.append(kwargs)
        raise AssertionError("resume of a finished run started training again")

    monkeypatch.setattr(Model, "train", no_training)
    before = run.best.stat().st_mtime_ns
    again = train_detector(run.data_yaml, run.train_dir, imgsz=IMGSZ, epochs=1, resume=True)
    assert again == run.best
    assert started == []
    assert run.best.stat().st_mtime_ns == before


class _Killed(Exception):
    """Stands in for the process being killed mid-run."""


def test_interrupted_training_resumes(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from ultralytics.engine.trainer import BaseTrainer

    from pillsnap_train.detector.train import train_detector

    real_save: Any = BaseTrainer.save_model

    def save_then_die(self: Any) -> None:
        real_save(self)
        raise _Killed  # right after epoch 1's checkpoint

    monkeypatch.setattr(BaseTrainer, "save_model", save_then_die)
    kw: dict[str, Any] = {"imgsz": IMGSZ, "epochs": 2, "batch": 8, "workers": 0}
    with pytest.raises(_Killed):
        train_detector(run.data_yaml, tmp_path / "r", **kw)
    monkeypatch.undo()
    last = tmp_path / "r" / "weights" / "last.pt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None

    best = train_detector(run.data_yaml, tmp_path / "r", resume=True, **kw)
    assert best.is_file()
    rows = (tmp_path / "r" / "results.csv").read_text().strip().splitlines()[1:]
    assert [int(float(r.split(",")[0])) for r in rows] == [1, 2]  # epoch 2 ran, once
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == -1  # finished


def test_pretrained_weight_names_are_refused(tmp_path: Path) -> None:
    from pillsnap_train.detector.train import train_detector

    with pytest.raises(ValueError, match="YAML"):
        train_detector(tmp_path / "data.yaml", tmp_path / "x", model="yolo11n.pt")
