"""An overall time estimate for ``pillsnap-train release`` (one line before each step).

Why: a release runs for over an hour on a small CPU and each step only reports its own
progress. The estimate starts from the step times of the reference run (the default
config's timed one-command rebuild on 2 CPU cores; see README), with the two training
steps scaled by how many epochs this config trains relative to that run (a soup trains
its classifier once per ingredient; the detector's stages add up), and, once a step has
run in this invocation, by how fast this machine and config went relative to that run.
It is a rough guide, not a promise: data size and image size scale only after the first
long step. With ``parallel_training`` the two training steps overlap, so only the longer
one counts while both are still to run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ReleaseConfig

__all__ = ["REFERENCE_EPOCHS", "REFERENCE_SECONDS", "ReleaseEta", "reference_seconds"]

#: Seconds per step in the reference run: ``configs/pushin-pill-edge.yaml`` (2.4.0) rebuilt by
#: its one command on 2 CPU cores, classifier and detector side by side: 109.7 min wall on
#: 2026-12-03 (README, "Rebuild"; docs/accuracy-2.0.md, "Bundle 2.4.0").
REFERENCE_SECONDS = {
    "ingest": 0.5,
    "train-classifier": 4050.0,
    "train-detector": 6407.0,
    "export": 7.0,
    "calibrate": 18.0,
    "variants": 37.0,
    "package": 88.0,
}
#: Epochs behind the reference run's two training steps: 2 soup ingredients x 12 epochs;
#: detector stages 10 + 5 + 8 + 10 + 10.
REFERENCE_EPOCHS = {"train-classifier": 24, "train-detector": 43}


def reference_seconds(cfg: ReleaseConfig) -> dict[str, float]:
    """The reference step times scaled to ``cfg``'s epochs (the only size a config states
    that moves a step's time in proportion)."""
    ref = dict(REFERENCE_SECONDS)
    cc, dc = cfg.classifier, cfg.detector
    cls_epochs = cc.epochs * max(1, len(cc.soup))
    ref["train-classifier"] *= cls_epochs / REFERENCE_EPOCHS["train-classifier"]
    if dc.enabled:
        det_epochs = dc.epochs + dc.finetune_epochs + sum(s.epochs for s in dc.extra_stages)
        ref["train-detector"] *= det_epochs / REFERENCE_EPOCHS["train-detector"]
    else:
        ref["train-detector"] = 0.0
    return ref


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class ReleaseEta:
    """Tracks the steps of one invocation and renders the overall ETA line."""

    def __init__(
        self,
        steps: Sequence[str],
        already_done: Sequence[str] = (),
        *,
        parallel: bool = False,
        reference: Mapping[str, float] | None = None,
    ) -> None:
        self._ref = dict(REFERENCE_SECONDS if reference is None else reference)
        self._parallel = parallel
        self._todo = [s for s in steps if s not in set(already_done)]
        self._planned = list(self._todo)
        self._start = time.monotonic()
        self._ran_ref = 0.0
        self._ran_actual = 0.0

    def finished(self, step: str, seconds: float) -> None:
        """Record a step that ran in this invocation (not skipped) and its duration."""
        if step in self._todo:
            self._todo.remove(step)
        self._ran_ref += self._ref.get(step, 0.0)
        self._ran_actual += seconds

    def skip(self, step: str) -> None:
        """A planned step turned out done (e.g. by the parallel detector process)."""
        if step in self._todo:
            self._todo.remove(step)

    def _left_reference(self) -> float:
        left = sum(self._ref.get(s, 0.0) for s in self._todo)
        pair = ("train-classifier", "train-detector")
        if self._parallel and all(s in self._todo for s in pair):
            left -= min(self._ref.get(s, 0.0) for s in pair)
        return left

    def line(self, step: str) -> str:
        """``overall: step 2/6 (train-classifier); 0 s elapsed; about 71 min left ...``."""
        total = len(self._planned)
        index = self._planned.index(step) + 1 if step in self._planned else 0
        left_ref = self._left_reference()
        if self._ran_ref >= 60.0:
            pace = self._ran_actual / self._ran_ref
            basis = f"reference run's step times x {pace:.2f} (this run's pace)"
        else:
            pace = 1.0
            basis = "reference run's step times, 2 CPU cores"
        elapsed = time.monotonic() - self._start
        where = f"step {index}/{total} ({step})" if index else f"step {step}"
        return (
            f"overall: {where}; {_minutes(elapsed)} elapsed; about "
            f"{_minutes(left_ref * pace)} left ({basis})"
        )
