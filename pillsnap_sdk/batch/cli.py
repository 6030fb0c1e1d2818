"""The ``--jsonl``/``--workers`` branch of ``pillsnap identify``, kept out of the main CLI."""

from __future__ import annotations

import argparse
import sys

from ..defaults import default_bundle_path
from .pool import IdentifyOptions
from .runner import run_jsonl

__all__ = ["identify_jsonl"]


def identify_jsonl(args: argparse.Namespace) -> int:
    """Run an archive job from parsed ``identify`` arguments; return the exit code."""
    if args.jsonl is None:
        print("pillsnap: error: --workers needs --jsonl OUT (the archive output)", file=sys.stderr)
        return 2
    if args.annotate is not None or args.json:
        print(
            "pillsnap: error: --jsonl cannot be combined with --annotate or --json", file=sys.stderr
        )
        return 2
    opts = IdentifyOptions(
        bundle=args.bundle or default_bundle_path(),
        mode=args.mode,
        top_k=args.top_k,
        workers=args.workers,
        threads=args.threads,
    )
    try:
        return run_jsonl(args.images, args.jsonl, opts).exit_code
    except KeyboardInterrupt:
        print(
            f"pillsnap: interrupted; {args.jsonl} keeps every photo finished so far: "
            "re-run the same command to resume",
            file=sys.stderr,
        )
        return 130
