"""An overall time estimate for ``pillsnap-train release`` (one line before each step).

Why: a release runs for over an hour on a small CPU and each step only reports its own
progress. The estimate starts from the step times of the reference run (default config,
2 CPU cores: classifier 21 min, detector 49 min, the other steps about 1 min together;
see README) and, once a step has run in this invocation, is scaled by how fast this
machine and config went relative to that run. It is a rough guide, not a promise:
configs with more data or epochs scale only after their first long step. With
``parallel_training`` the two training steps overlap, so only the longer one counts while
both are still to run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

__all__ = ["REFERENCE_SECONDS", "ReleaseEta"]

#: Seconds per step in the reference run (README: 70.7 min wall on 2 CPU cores).
REFERENCE_SECONDS = {
    "ingest": 15.0,
    "train-classifier": 21 * 60.0,
    "train-detector": 49 * 60.0,
    "export": 10.0,
    "calibrate": 10.0,
    "variants": 10.0,
    "package": 30.0,
}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class ReleaseEta:
    """Tracks the steps of one invocation and renders the overall ETA line."""

    def __init__(
        self, steps: Sequence[str], already_done: Sequence[str] = (), *, parallel: bool = False
    ) -> None:
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
        self._ran_ref += REFERENCE_SECONDS.get(step, 0.0)
        self._ran_actual += seconds

    def skip(self, step: str) -> None:
        """A planned step turned out done (e.g. by the parallel detector process)."""
        if step in self._todo:
            self._todo.remove(step)

    def _left_reference(self) -> float:
        left = sum(REFERENCE_SECONDS.get(s, 0.0) for s in self._todo)
        pair = ("train-classifier", "train-detector")
        if self._parallel and all(s in self._todo for s in pair):
            left -= min(REFERENCE_SECONDS[s] for s in pair)
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
