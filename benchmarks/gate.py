"""The CI regression gate: this run's SDK / floor ratios against a committed baseline.

Why ratios and why this much care: milliseconds on a shared 2-core CI box move with the
neighbours, ratios measured interleaved do not (much). Even so, one burst of load can
inflate a ratio once, so a failing metric is re-measured and the best attempt counts; a
real regression inflates it every time and still fails. The baseline records the *worst*
of several passes, so unchanged code sits inside it (see :func:`worst_metrics`).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pillsnap_sdk.bench.scenes import MULTI, SINGLE
from pillsnap_sdk.bench.stages import SceneResult
from pillsnap_sdk.errors import PillsnapError

__all__ = [
    "DEFAULT_TOLERANCE",
    "GATED_METRICS",
    "GateCheck",
    "GateResult",
    "combine_attempts",
    "compare_to_baseline",
    "gate_against_baseline",
    "gate_metrics",
    "gate_passed",
    "load_baseline",
    "median_metrics",
    "run_gate",
    "save_baseline",
    "worst_metrics",
]

#: A gated ratio may grow by this fraction over its baseline before CI fails.
DEFAULT_TOLERANCE = 0.10
#: Metrics the regression gate compares (ratios to the floor, never milliseconds).
GATED_METRICS = (
    f"{MULTI}.e2e_vs_floor",
    f"{SINGLE}.e2e_vs_floor",
    f"{MULTI}.e2e_vs_sdk_floor",
    f"{SINGLE}.e2e_vs_sdk_floor",
)


@dataclass
class GateCheck:
    """One gated ratio against its baseline."""

    metric: str
    baseline: float | None
    current: float | None
    limit: float | None
    status: Literal["pass", "fail", "missing", "new"]


@dataclass
class GateResult:
    """The regression gate's verdict (ratios to the floor against a committed baseline)."""

    baseline_file: str
    bundle: str
    tolerance: float
    attempts: int
    checks: list[GateCheck]
    passed: bool
    note: str = ""


def gate_metrics(scenes: Sequence[SceneResult]) -> dict[str, float]:
    """The gated numbers of a run: per scene, end to end over each floor."""
    out: dict[str, float] = {}
    for s in scenes:
        out[f"{s.scene}.e2e_vs_floor"] = s.e2e_vs_floor
        out[f"{s.scene}.e2e_vs_sdk_floor"] = s.e2e_vs_sdk_floor
    return out


def compare_to_baseline(
    current: Mapping[str, float],
    baseline: Mapping[str, float],
    tolerance: float = DEFAULT_TOLERANCE,
    gated: Sequence[str] | None = None,
) -> list[GateCheck]:
    """Each gated ratio must stay within ``baseline * (1 + tolerance)``.

    A gated metric missing from the current run fails (the bench broke); one missing
    from the baseline is reported as "new" and does not fail.
    """
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    names = list(gated) if gated is not None else sorted(set(baseline) | set(current))
    checks: list[GateCheck] = []
    for name in names:
        base, cur = baseline.get(name), current.get(name)
        if base is None:
            checks.append(GateCheck(name, None, cur, None, "new"))
        elif cur is None:
            checks.append(GateCheck(name, base, None, base * (1 + tolerance), "missing"))
        else:
            limit = base * (1 + tolerance)
            checks.append(GateCheck(name, base, cur, limit, "pass" if cur <= limit else "fail"))
    return checks


def gate_passed(checks: Sequence[GateCheck]) -> bool:
    return all(c.status in ("pass", "new") for c in checks)


def combine_attempts(attempts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per metric, the best (lowest) ratio over attempts: a regression must reproduce."""
    out: dict[str, float] = {}
    for att in attempts:
        for k, v in att.items():
            out[k] = min(v, out.get(k, v))
    return out


def run_gate(
    measure: Callable[[Sequence[str]], Mapping[str, float]],
    baseline: Mapping[str, float],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    gated: Sequence[str] = GATED_METRICS,
    max_attempts: int = 2,
) -> tuple[list[GateCheck], int, list[dict[str, float]]]:
    """Measure; on failure re-measure what failed (up to ``max_attempts``), keep the best.

    ``measure(failing)`` gets the failing metric names (empty on the first call) and may
    re-measure only those. Returns (checks, attempts used, raw attempts).
    """
    gated_here = [g for g in gated if g in baseline]
    attempts: list[dict[str, float]] = []
    checks: list[GateCheck] = []
    failing: list[str] = []
    for _ in range(max(1, max_attempts)):
        attempts.append(dict(measure(failing)))
        checks = compare_to_baseline(combine_attempts(attempts), baseline, tolerance, gated_here)
        if gate_passed(checks):
            break
        failing = [c.metric for c in checks if c.status in ("fail", "missing")]
    return checks, len(attempts), attempts


def median_metrics(passes: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per metric, the median over passes (recorded beside the baseline, for reading)."""
    names = sorted({k for p in passes for k in p})
    return {k: float(statistics.median(p[k] for p in passes if k in p)) for k in names}


def worst_metrics(passes: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per metric, the highest ratio over passes: what the gate compares against.

    Measured on the 2-core reference box: ``e2e_vs_sdk_floor`` stayed in 0.96-1.05 over
    nine quick passes, but ``multi_pill.e2e_vs_floor`` ranged 1.05-1.29, because the cost of
    the SDK's session options (classifier memory arena off) depends on machine load. A
    median baseline made the gate fail 1 run in 3 with no code change; against the worst
    of N passes it fails only on a change that is 10 % worse than anything the current
    code produced, confirmed by a re-measure.
    """
    names = sorted({k for p in passes for k in p})
    return {k: float(max(p[k] for p in passes if k in p)) for k in names}


def load_baseline(path: Path) -> dict[str, Any]:
    """Read a baseline file (``{"schema": 1, "bundles": {"name@version": {...}}}``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if (
        not isinstance(data, dict)
        or data.get("schema") != 1
        or not isinstance(data.get("bundles"), dict)
    ):
        raise PillsnapError(f"{path}: not a pillsnap bench baseline (schema 1)")
    return data


def save_baseline(
    path: Path, bundle_key: str, ratios: Mapping[str, float], meta: Mapping[str, Any]
) -> None:
    """Add or replace this bundle's entry, keeping the other bundles' entries."""
    data: dict[str, Any] = {"schema": 1, "tolerance": DEFAULT_TOLERANCE, "bundles": {}}
    if path.is_file():
        data = load_baseline(path)
    data["bundles"][bundle_key] = {"ratios": {k: round(v, 4) for k, v in ratios.items()}, **meta}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def gate_against_baseline(
    baseline_file: Path,
    bundle_key: str,
    first: Sequence[SceneResult],
    remeasure: Callable[[Sequence[str]], Sequence[SceneResult]],
    tolerance: float | None = None,
) -> GateResult:
    """Gate a run's ``first`` scene results against this bundle's entry in the baseline.

    ``remeasure(scene names)`` measures those scenes again; it is called only for scenes
    whose ratio failed. ``tolerance`` defaults to the baseline file's. A bundle without an
    entry is not gated (passed, with a note saying how to record one).
    """
    data = load_baseline(baseline_file)
    tol = tolerance if tolerance is not None else float(data.get("tolerance", DEFAULT_TOLERANCE))
    entry = data["bundles"].get(bundle_key)
    if not isinstance(entry, dict):
        note = f"no baseline for {bundle_key}: not gated (record one with --save-baseline)"
        return GateResult(str(baseline_file), bundle_key, tol, 0, [], True, note)
    base = {k: float(v) for k, v in entry.get("ratios", {}).items()}

    def measure(failing: Sequence[str]) -> Mapping[str, float]:
        if not failing:
            return gate_metrics(first)
        return gate_metrics(remeasure(sorted({m.split(".")[0] for m in failing})))

    checks, attempts, _ = run_gate(measure, base, tolerance=tol)
    return GateResult(str(baseline_file), bundle_key, tol, attempts, checks, gate_passed(checks))
