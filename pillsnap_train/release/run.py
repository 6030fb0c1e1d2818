"""``pillsnap-train release``: the steps in order, with resume, over one work dir.

:class:`Release` ties a config to its work dir (:mod:`.workdir`) and data (:mod:`.data`)
and has one method per step; each step's code lives in its own module and returns a typed
result (:mod:`.results`) that becomes its ``steps/<step>.json`` marker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..config import ReleaseConfig
from ..eta import ReleaseEta, reference_seconds
from ..steps import STEPS
from . import calibrate as calibrate_step
from . import export as export_step
from . import ingest as ingest_step
from . import package as package_step
from . import train as train_step
from . import variants as variants_step
from .crops import classifier_spec, crop_batches, detector_spec
from .data import ReleaseData
from .results import (
    CalibrateResult,
    ExportResult,
    IngestResult,
    PackageResult,
    StepResult,
    TrainClassifierResult,
    TrainDetectorResult,
    VariantsResult,
)
from .workdir import GateFailure, WorkDir, log, step_marker

__all__ = ["STEPS", "Release", "run_release"]

R = TypeVar("R", bound=StepResult)


class Release(ReleaseData):
    """One release run over ``cfg.work_dir``: bookkeeping, data, and a method per step."""

    def __init__(
        self,
        cfg: ReleaseConfig,
        *,
        allow_config_change: bool = False,
        command: str = "",
        read_only: bool = False,
    ) -> None:
        """``read_only`` opens an existing work_dir to read its data (e.g. the validation
        split for an evaluation) without checking or rewriting its config marker."""
        super().__init__(cfg)
        self.workdir = WorkDir(cfg, allow_config_change=allow_config_change, read_only=read_only)
        self.allow_config_change = allow_config_change
        self.command = command or "pillsnap-train release --config CONFIG"
        self.steps_dir = self.workdir.steps_dir

    # -- bookkeeping (see WorkDir) ---------------------------------------------------------
    def done(self, step: str) -> dict[str, Any] | None:
        return self.workdir.done(step)

    def done_info(self, step: str) -> dict[str, Any]:
        return self.workdir.done_info(step)

    def mark(self, step: str, info: dict[str, Any]) -> dict[str, Any]:
        return self.workdir.mark(step, info)

    def step(self, name: str, fn: Callable[[], Any]) -> dict[str, Any]:
        return self.workdir.step(name, fn)

    def result(self, step: str, kind: type[R]) -> R:
        """A finished step's marker as its typed result."""
        return kind.model_validate(self.done_info(step))

    # -- specs and crops (kept for scripts and tests) ----------------------------------------
    def classifier_spec(self) -> Any:
        return classifier_spec(self.cfg)

    def detector_spec(self) -> Any:
        return detector_spec(self.cfg)

    def _crop_batches(
        self, split: str, *, with_labels: bool = True, holdout: bool = False
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        return crop_batches(self, split, holdout=holdout)

    # -- the steps ---------------------------------------------------------------------------
    def ingest(self) -> IngestResult:
        return ingest_step.ingest(self)

    def train_classifier(self) -> TrainClassifierResult:
        return train_step.train_classifier(self)

    def train_detector(self) -> TrainDetectorResult:
        return train_step.train_detector(self)

    def export(self) -> ExportResult:
        return export_step.export(
            self,
            self.result("train-classifier", TrainClassifierResult),
            self.result("train-detector", TrainDetectorResult),
        )

    def calibrate(self) -> CalibrateResult:
        return calibrate_step.calibrate(self, self.result("export", ExportResult))

    def variants(self) -> VariantsResult:
        return variants_step.variants(self, self.result("export", ExportResult))

    def package(self) -> PackageResult:
        inputs = package_step.Inputs(
            ingest=self.result("ingest", IngestResult),
            classifier=self.result("train-classifier", TrainClassifierResult),
            detector=self.result("train-detector", TrainDetectorResult),
            export=self.result("export", ExportResult),
            calibrate=self.result("calibrate", CalibrateResult),
            variants=self.result("variants", VariantsResult),
        )
        return package_step.package(self, inputs, self.command)


def run_release(
    cfg: ReleaseConfig,
    *,
    until: str = "package",
    force_steps: tuple[str, ...] = (),
    command: str = "",
    allow_config_change: bool = False,
    only: bool = False,
) -> dict[str, Any]:
    """Run the steps up to ``until`` (or just ``until`` with ``only``); return summaries.

    ``only`` lets independent steps run side by side (e.g. the detector trains while the
    classifier does); the step still needs its inputs from earlier steps.
    """
    if until not in STEPS:
        raise ValueError(f"unknown step {until!r}; choose from {STEPS}")
    rel = Release(cfg, command=command, allow_config_change=allow_config_change)
    for s in force_steps:
        step_marker(rel.work, s).unlink(missing_ok=True)
    fns: dict[str, Callable[[], Any]] = {
        "ingest": rel.ingest,
        "train-classifier": rel.train_classifier,
        "train-detector": rel.train_detector,
        "export": rel.export,
        "calibrate": rel.calibrate,
        "variants": rel.variants,
        "package": rel.package,
    }
    results = {}
    todo = [until] if only else STEPS[: STEPS.index(until) + 1]
    eta = ReleaseEta(
        todo,
        already_done=[s for s in todo if rel.done(s) is not None],
        parallel=cfg.parallel_training,
        reference=reference_seconds(cfg),
    )
    side: Any = None
    for s in todo:
        if (
            s == "train-classifier"
            and cfg.parallel_training
            and "train-detector" in todo
            and rel.done("train-detector") is None
        ):
            side = _start_detector_process(cfg, allow_config_change)
        if s == "train-detector" and side is not None:
            side.join()
            if side.exitcode != 0:
                raise GateFailure(f"detector training process failed (exit {side.exitcode})")
        ran = rel.done(s) is None  # after the join: the side process may have done it
        if ran:
            log(eta.line(s))
        else:
            eta.skip(s)
        results[s] = rel.step(s, fns[s])
        if ran:
            eta.finished(s, float(results[s].get("seconds", 0.0)))
    return results


def _train_detector_only(cfg_json: str, allow_config_change: bool) -> None:
    import os

    cfg = ReleaseConfig.model_validate_json(cfg_json)
    logfile = Path(cfg.work_dir) / "detector" / "train.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)  # two trainers on one terminal interleave unreadably
    os.dup2(fd, 2)
    run_release(cfg, until="train-detector", only=True, allow_config_change=allow_config_change)


def _start_detector_process(cfg: ReleaseConfig, allow_config_change: bool) -> Any:
    """Train the detector in a spawned process while this one trains the classifier.

    Its log goes to ``work_dir/detector/train.log``; the parent waits for it before the
    ``train-detector`` step, which then finds the step marker the child wrote.
    """
    import multiprocessing

    log("train-detector: running in a side process (parallel_training); log in detector/")
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=_train_detector_only,
        args=(cfg.model_dump_json(), allow_config_change),
        name="pillsnap-train-detector",
    )
    proc.start()
    return proc
