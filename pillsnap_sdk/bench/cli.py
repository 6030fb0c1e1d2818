"""What ``pillsnap bench`` does once its options are parsed: run, print, write JSON.

The options themselves are declared once, in :mod:`pillsnap_sdk.cli` (so ``pillsnap``
builds its parser without importing the bench); ``python -m pillsnap_sdk.bench`` goes
through that same parser. Exit codes: 0 done; 1 a bundle was refused; 2 usage error.
The measuring modules are imported only here, when a bench runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ..defaults import default_bundle_path

__all__ = ["bench_rounds", "main", "progress", "run_cli_bench_args"]


def bench_rounds(args: argparse.Namespace) -> int | None:
    """``--rounds`` (default 20, quick 7); None after printing the usage error if < 1."""
    rounds: int = args.rounds if args.rounds is not None else (7 if args.quick else 20)
    if rounds < 1:
        print("pillsnap: error: --rounds must be >= 1", file=sys.stderr)
        return None
    return rounds


def progress(msg: str) -> None:
    """Bench progress lines go to stderr, so ``--json`` output on stdout stays clean."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_cli_bench_args(args: argparse.Namespace) -> int:
    """Run from the parsed ``pillsnap bench`` options: print the table (or JSON)."""
    from .report import format_table
    from .run import run_bench

    rounds = bench_rounds(args)
    if rounds is None:
        return 2
    report = run_bench(
        args.bundle or default_bundle_path(),
        rounds=rounds,
        quick=args.quick,
        images=args.images,
        providers=args.providers,
        profile=args.profile,
        profiles_file=args.profiles_file,
        progress=progress,
        precision=args.precision,
    )
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_table(report), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pillsnap_sdk.bench [--quick] ...``: the same as ``pillsnap bench``."""
    from ..cli import main as pillsnap_main

    return pillsnap_main(["bench", *(sys.argv[1:] if argv is None else argv)])
