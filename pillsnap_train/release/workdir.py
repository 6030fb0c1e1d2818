"""The release's work dir: config marker, step markers, resume, and the gate exception.

Each step writes its outputs under ``work_dir`` and a ``steps/<step>.json`` marker; a rerun
skips finished steps (resume after a crash or a stopped session) unless ``force``. The
config's hash is stored, and a changed config on an existing work dir is refused rather
than mixing artefacts of two configs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import ReleaseConfig

__all__ = ["GateFailure", "WorkDir", "log", "step_marker"]


class GateFailure(RuntimeError):
    """A release gate failed; the bundle is not published."""


def log(msg: str) -> None:
    print(f"[pillsnap-train] {msg}", flush=True)


STEPS_DIR = "steps"


def step_marker(work: Path, step: str) -> Path:
    """Where a finished step's marker lives: ``work_dir/steps/<step>.json`` (its existence
    is what "the step is done" means, also to a side process watching for it)."""
    return work / STEPS_DIR / f"{step}.json"


class WorkDir:
    """Bookkeeping of one release run over ``cfg.work_dir``."""

    def __init__(
        self, cfg: ReleaseConfig, *, allow_config_change: bool = False, read_only: bool = False
    ) -> None:
        """``read_only`` opens an existing work_dir to read its data without checking or
        rewriting its config marker."""
        self.cfg = cfg
        self.work = Path(cfg.work_dir)
        self.allow_config_change = allow_config_change
        self.steps_dir = self.work / STEPS_DIR
        if not read_only:
            self.steps_dir.mkdir(parents=True, exist_ok=True)
            self._check_config()

    def _check_config(self) -> None:
        text = self.cfg.model_dump_json()
        digest = hashlib.sha256(text.encode()).hexdigest()
        marker = self.work / "config.sha256"
        changed = marker.is_file() and marker.read_text().strip() != digest
        if changed and not self.allow_config_change:
            raise GateFailure(
                f"{self.work} was produced by a different config; use a new work_dir, or "
                "--allow-config-change (and --redo the steps the change affects)"
            )
        marker.write_text(digest + "\n")
        (self.work / "config.json").write_text(json.dumps(json.loads(text), indent=2) + "\n")

    def done(self, step: str) -> dict[str, Any] | None:
        p = step_marker(self.work, step)
        if p.is_file():
            data: dict[str, Any] = json.loads(p.read_text())
            return data
        return None

    def done_info(self, step: str) -> dict[str, Any]:
        """A finished step's marker; :class:`GateFailure` when the step has not run."""
        data = self.done(step)
        if data is None:
            raise GateFailure(f"step {step} has not run yet")
        return data

    def mark(self, step: str, info: dict[str, Any]) -> dict[str, Any]:
        step_marker(self.work, step).write_text(
            json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
        )
        return info

    def step(self, name: str, fn: Callable[[], BaseModel | dict[str, Any]]) -> dict[str, Any]:
        """Run a step unless its marker exists; the marker is its result plus ``seconds``."""
        prev = self.done(name)
        if prev is not None:
            log(f"{name}: done earlier, skipping (delete {step_marker(self.work, name)} to redo)")
            return prev
        log(f"{name}: running")
        t = time.perf_counter()
        result = fn()
        info = result.model_dump(exclude_unset=True) if isinstance(result, BaseModel) else result
        info["seconds"] = round(time.perf_counter() - t, 1)
        log(f"{name}: finished in {info['seconds']:.0f} s")
        return self.mark(name, info)
