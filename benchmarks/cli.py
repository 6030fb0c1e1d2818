"""``python -m benchmarks``: ``pillsnap bench`` plus peers, variants and the CI gate.

Takes ``pillsnap bench``'s options and adds ``--no-peers``, ``--gate``, ``--tolerance``,
``--save-baseline`` and ``--baseline-passes``. Exit codes: 0 done; 1 a bundle was
refused, or, with ``--gate``, the gate or a device-profile target failed; 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pillsnap_sdk.bench.cli import bench_rounds, progress
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.errors import PillsnapError

from .report import FullReport

__all__ = ["main"]

DESCRIPTION = "Latency of the SDK against the onnxruntime floor and against peers, in one run."


def _parser() -> argparse.ArgumentParser:
    from pillsnap_sdk.cli import bench_arguments

    p = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION)
    bench_arguments(p)
    p.add_argument("--gate", type=Path, metavar="BASELINE", help="fail on >10%% ratio regression")
    p.add_argument(
        "--tolerance", type=float, help="allowed ratio growth (default: the baseline file's, 0.10)"
    )
    p.add_argument(
        "--save-baseline", type=Path, metavar="BASELINE", help="record this run's ratios"
    )
    p.add_argument(
        "--baseline-passes", type=int, default=5, help="passes --save-baseline summarises"
    )
    p.add_argument("--no-peers", action="store_true", help="skip Ultralytics/timm/seed peers")
    return p


def run_args(args: argparse.Namespace) -> int:
    """Run from parsed options: print the table (or JSON).

    ``--save-baseline`` records the worst gated ratios of ``--baseline-passes`` passes
    (:func:`~.gate.worst_metrics`), with their medians beside them for reading.
    """
    from .report import format_full_table
    from .run import run_full_bench

    rounds = bench_rounds(args)
    if rounds is None:
        return 2
    report = run_full_bench(
        args.bundle or default_bundle_path(),
        rounds=rounds,
        quick=args.quick,
        peers=not args.no_peers,
        images=args.images,
        providers=args.providers,
        baseline=args.gate,
        tolerance=args.tolerance,
        profile=args.profile,
        profiles_file=args.profiles_file,
        extra_passes=max(0, args.baseline_passes - 1) if args.save_baseline is not None else 0,
        progress=progress,
        precision=args.precision,
    )
    if args.save_baseline is not None:
        _save_baseline(args.save_baseline, report, rounds)
        progress(f"baseline for {report.meta['bundle']['key']} written to {args.save_baseline}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_full_table(report), end="")
    return _exit_code(report, gate_requested=args.gate is not None)


def _save_baseline(path: Path, report: FullReport, rounds: int) -> None:
    from .gate import median_metrics, save_baseline, worst_metrics

    passes = report.meta["gate_metric_passes"]
    save_baseline(
        path,
        report.meta["bundle"]["key"],
        worst_metrics(passes),
        {
            "ratios_median": {k: round(v, 4) for k, v in median_metrics(passes).items()},
            "date": report.meta["date"][:10],
            "rounds": rounds,
            "passes": len(passes),
            "machine": report.meta["machine"],
            "versions": report.meta["versions"],
        },
    )


def _exit_code(report: FullReport, *, gate_requested: bool) -> int:
    """1 when a requested gate failed or a profile target was missed; a plain run is 0."""
    if not gate_requested:
        return 0
    gate_ok = report.gate is None or report.gate.passed
    targets_ok = all(t.status != "fail" for t in report.profiles)
    return 0 if gate_ok and targets_ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks [--quick] [--gate benchmarks/baseline.json] ...``."""
    try:
        return run_args(_parser().parse_args(argv))
    except PillsnapError as exc:
        print(f"pillsnap: error: {exc}", file=sys.stderr)
        return 1
