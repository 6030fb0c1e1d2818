"""Shared fixtures for the release-pipeline tests (e2e, gates).

* :class:`NetworkGuard`: every outgoing network call (connect, DNS, UDP send) is recorded and
  refused while it is installed; local ``AF_UNIX`` sockets still work.
* ``release_run``: a tiny AIHub + YOLO dataset taken through ``pillsnap-train release`` once
  per session (through :func:`pillsnap_train.cli.main`, under the guard). The e2e and gate
  tests read its outputs instead of training again.

Fixture data: the YOLO fixture draws classes ``0..n-1`` exactly like the AIHub one (red circle,
blue ellipse, ...), so the two sources side by side give pairs of *visually identical* classes
under different codes: no classifier can get them right. ``make_sources`` shifts the YOLO
fixture to classes 4.. (orange, purple, white) so all 7 classes can be told apart.
"""

from __future__ import annotations

import contextlib
import errno
import io
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

AIHUB_CLASSES = 4
YOLO_CLASSES = 3
#: Tiny detector settings (64 px, one epoch).
TINY_DETECTOR: dict[str, Any] = {
    "enabled": True,
    "model": "yolo11n.yaml",
    "imgsz": 64,
    "epochs": 1,
    "batch": 8,
    "workers": 0,
    "finetune_epochs": 1,  # exercises the second, low-lr stage
    "photometric_fraction": 0.5,  # and the camera-shifted copies of real train photos
}
CREDITS = [
    {
        "name": "AIHub pill fixture",
        "source": "synthetic, pillsnap_train.data.fixtures.make_aihub_fixture",
        "licence": "CC0-1.0",
        "attribution": "Drawn by the test suite.",
    },
    {
        "name": "Roboflow-style YOLO fixture",
        "source": "synthetic, pillsnap_train.data.fixtures.make_yolo_fixture",
        "licence": "CC-BY-4.0",
        "attribution": "Drawn by the test suite too.",
    },
]


# --------------------------------------------------------------------------- network guard


class NetworkGuard:
    """Refuse and record outgoing network use (Python-level socket API)."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def _trip(self, what: str, target: Any) -> None:
        self.attempts.append(f"{what} {target!r}")
        raise OSError(errno.ENETUNREACH, f"network disabled in tests ({what} {target!r})")

    @contextlib.contextmanager
    def installed(self) -> Iterator[NetworkGuard]:
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_sendto = socket.socket.sendto

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family == getattr(socket, "AF_UNIX", object()):
                return real_connect(sock, address)
            self._trip("socket.connect", address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family == getattr(socket, "AF_UNIX", object()):
                return real_connect_ex(sock, address)
            self._trip("socket.connect_ex", address)
            return errno.ENETUNREACH  # pragma: no cover - _trip raises

        def sendto(sock: socket.socket, *args: Any) -> int:
            if sock.family == getattr(socket, "AF_UNIX", object()):
                return real_sendto(sock, *args)
            self._trip("socket.sendto", args[-1])
            return 0  # pragma: no cover

        def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            self._trip("socket.create_connection", address)
            raise AssertionError("unreachable")  # pragma: no cover

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            self._trip("socket.getaddrinfo", (host, port))
            return []  # pragma: no cover

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(socket.socket, "connect", connect)
            mp.setattr(socket.socket, "connect_ex", connect_ex)
            mp.setattr(socket.socket, "sendto", sendto)
            mp.setattr(socket, "create_connection", create_connection)
            mp.setattr(socket, "getaddrinfo", getaddrinfo)
            yield self


@pytest.fixture
def no_network() -> Iterator[NetworkGuard]:
    """Function-scoped guard; the test fails at teardown if anything tried the network."""
    guard = NetworkGuard()
    with guard.installed():
        yield guard
    assert guard.attempts == [], f"network access attempted: {guard.attempts}"


# --------------------------------------------------------------------------- tiny dataset


def make_sources(root: Path) -> tuple[Path, Path]:
    """AIHub fixture (classes 0-3, K-codes + metadata) and YOLO fixture (classes 4-6)."""
    import pillsnap_train.data.fixtures as fx

    aihub = fx.make_aihub_fixture(
        root / "aihub", n_classes=AIHUB_CLASSES, singles_per_class=8, n_combos=6, seed=0
    )
    original = fx.fixture_class
    # make_yolo_fixture has no class offset: shift the class table it draws and names from.
    fx.fixture_class = lambda i: original(i + AIHUB_CLASSES)  # type: ignore[assignment]
    try:
        yolo = fx.make_yolo_fixture(
            root / "yolo", n_classes=YOLO_CLASSES, photos_per_class=4, n_combos=2, seed=1
        )
    finally:
        fx.fixture_class = original
    return aihub, yolo


def release_config(
    root: Path,
    *,
    aihub: Path,
    yolo: Path,
    work: str = "work",
    out: str = "out",
    detector: bool = True,
    variants: list[str] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A release config (as YAML data) for the tiny dataset; paths relative to ``root``."""
    cfg: dict[str, Any] = {
        "name": "tiny-e2e",
        "version": "0.0.1",
        "description": "Tiny end-to-end test bundle.",
        "work_dir": work,
        "output_dir": out,
        "seed": 0,
        "data": {
            "sources": [
                {"kind": "aihub", "path": str(aihub), "name": "aihub"},
                {"kind": "yolo", "path": str(yolo), "name": "yolo"},
            ],
            "val_fraction": 0.25,
            "credits": CREDITS,
        },
        # 64 px crops, ~56 optimiser steps (~20 s). lr 3e-3 (head and backbone) because 64 px
        # is far from ImageNet's 224 and the features have to move; half-strength augmentation
        # because full strength needs more steps than a test can afford (measured on a second
        # fixture: 0.99-1.0 held-out crop top-1 at 0.5 over 3 seeds, 0.80-1.0 at 1.0).
        # threads: 1 because test machines are shared: with 2 OpenMP threads on 2 busy cores a
        # step took 5-13 s (threads spin-waiting for each other) instead of 0.25 s.
        "classifier": {
            "img_size": 64,
            "epochs": 8,
            "batch_size": 16,
            "lr": 0.003,
            "aug_strength": 0.5,
            "negatives": 0.25,  # outlier exposure wired through the real data loader
            "threads": 1,
        },
        "detector": TINY_DETECTOR if detector else {"enabled": False},
        "export": {
            "variants": ["fp16", "int8"] if variants is None else variants,
            "int8_calibration_crops": 32,
        },
        "gates": {"min_val_top1": 0.5},
        "limitations": ["Synthetic test data: the numbers mean nothing about real pills."],
    }
    cfg.update(top)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- latency targets

#: The tiny bundle identifies a photo in ~5 ms on an idle 2-core machine, but the test
#: machines are shared: at load 8 on 2 cores the same call took 90-450 ms, against the
#: cpu-2core profile's 250 ms target. The e2e tests check the gate's plumbing (rows, statuses,
#: "not run" for absent devices), not this machine's speed, so CPU targets are scaled up.
LATENCY_SLACK = 20.0


@contextlib.contextmanager
def relaxed_latency_targets() -> Iterator[dict[str, Any]]:
    import copy

    from pillsnap_train import latency

    profiles = copy.deepcopy(latency.load_profiles())
    for prof in profiles["profiles"].values():
        if prof.get("provider", "CPUExecutionProvider") == "CPUExecutionProvider":
            prof["targets_ms"] = {k: v * LATENCY_SLACK for k, v in prof["targets_ms"].items()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(latency, "load_profiles", lambda path=None: profiles)
        yield profiles


# --------------------------------------------------------------------------- one release run


@dataclass
class ReleaseRun:
    root: Path
    config_path: Path
    config: dict[str, Any]
    aihub: Path
    yolo: Path
    rc: int
    seconds: float
    stdout: str
    stderr: str
    network_attempts: list[str] = field(default_factory=list)

    @property
    def work(self) -> Path:
        return self.root / str(self.config["work_dir"])

    @property
    def out(self) -> Path:
        return self.root / str(self.config["output_dir"])

    def step(self, name: str) -> dict[str, Any]:
        import json

        data: dict[str, Any] = json.loads((self.work / "steps" / f"{name}.json").read_text())
        return data


@pytest.fixture(scope="session")
def release_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseRun]:
    """``pillsnap-train release --config CFG`` on the tiny dataset, once, without network."""
    import torch

    import pillsnap_train.data.fixtures as fx
    from pillsnap_train.cli import main

    root = tmp_path_factory.mktemp("release")
    aihub, yolo = make_sources(root)
    cfg = release_config(root, aihub=aihub, yolo=yolo)
    # The 2.0 release paths: a detector-only source (its class never reaches the
    # classifier), dense-pile scenes, and the confidently-wrong bound and gate.
    original = fx.fixture_class  # class codes of their own, as make_sources does
    fx.fixture_class = lambda i: original(i + AIHUB_CLASSES + YOLO_CLASSES)  # type: ignore[assignment]
    try:
        extra = fx.make_yolo_fixture(
            root / "extra", n_classes=2, photos_per_class=3, n_combos=2, seed=7
        )
    finally:
        fx.fixture_class = original
    cfg["data"]["detector_sources"] = [{"kind": "yolo", "path": str(extra), "name": "extra"}]
    if cfg["detector"].get("enabled"):
        cfg["detector"] = {**cfg["detector"], "pile_scenes": 2, "synth_scenes": 2}
    cfg["calibration"] = {"max_confident_wrong": 0.05}
    cfg["gates"] = {**cfg["gates"], "max_confident_wrong_rate": 1.0}
    cfg_path = write_config(root / "release.yaml", cfg)
    # One torch thread for the whole run (training sets it anyway; export and the parity
    # checks in package run torch too); the rest of the session gets its setting back.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    guard = NetworkGuard()
    out, err = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    try:
        with (
            guard.installed(),
            relaxed_latency_targets(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            rc = main(["release", "--config", str(cfg_path)])
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t
    print(f"release run: rc={rc} in {seconds:.1f} s\n{out.getvalue()[-3000:]}")
    yield ReleaseRun(
        root,
        cfg_path,
        cfg,
        aihub,
        yolo,
        rc,
        seconds,
        out.getvalue(),
        err.getvalue(),
        guard.attempts,
    )
