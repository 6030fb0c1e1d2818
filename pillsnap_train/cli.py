"""``pillsnap-train``: run the release pipeline, or any step of it (with its prerequisites).

    pillsnap-train release --config configs/pushin-pill-edge.yaml
    pillsnap-train train-classifier --config ...      # ingest + train, then stop
    pillsnap-train release --config ... --redo calibrate --redo package

Exit codes: 0 released / step done; 1 a gate failed or a step raised; 2 usage error.
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads that spin-wait turn a busy 2-core machine into a
# crawl (measured 5-13 s per training step instead of 0.25 s with another job running).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .config import load_config
from .release import STEPS, GateFailure, run_release

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="pillsnap-train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("release", *STEPS):
        sp = sub.add_parser(name, help="all steps" if name == "release" else f"up to {name}")
        sp.add_argument("--config", required=True)
        sp.add_argument(
            "--redo",
            action="append",
            default=[],
            choices=STEPS,
            help="forget a finished step and run it again (repeatable)",
        )
        sp.add_argument(
            "--allow-config-change",
            action="store_true",
            help="accept a changed config on an existing work_dir",
        )
        sp.add_argument(
            "--only",
            action="store_true",
            help="run just this step (its inputs must exist), e.g. to train models in parallel",
        )
    rb = sub.add_parser(
        "robustness",
        help="score a bundle on shifted validation photos (camera, light, plain tables)",
    )
    rb.add_argument("--config", required=True, help="the config whose work_dir holds the split")
    rb.add_argument("--bundle", help="bundle dir or zip (default: the config's published one)")
    rb.add_argument("--scenes", type=int, default=30, help="plain-table scenes (0 skips them)")
    rb.add_argument("--piles", type=int, default=10, help="dense-pile scenes (0 skips them)")
    rb.add_argument("--json", dest="json_out", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    if args.command == "robustness":
        return _robustness(cfg, args.bundle, args.scenes, args.piles, args.json_out)
    until = "package" if args.command == "release" else args.command
    command = f"pillsnap-train {args.command} --config {args.config}"
    try:
        results = run_release(
            cfg,
            until=until,
            force_steps=tuple(args.redo),
            command=command,
            allow_config_change=args.allow_config_change,
            only=args.only,
        )
    except GateFailure as exc:
        print(f"pillsnap-train: RELEASE BLOCKED: {exc}", file=sys.stderr)
        return 1
    _summary(results)
    return 0


def _robustness(cfg: Any, bundle: str | None, scenes: int, piles: int, json_out: str | None) -> int:
    from pathlib import Path

    from pillsnap_sdk import Identifier, PillsnapError

    from .release import Release
    from .robustness import evaluate_robustness, format_table

    if scenes < 0 or piles < 0:
        print("pillsnap-train: --scenes and --piles must be >= 0", file=sys.stderr)
        return 2
    rel = Release(cfg, command="pillsnap-train robustness", read_only=True)
    if rel.done("ingest") is None:
        print(
            f"pillsnap-train: no ingested data in {rel.work}: run `ingest` first", file=sys.stderr
        )
        return 2
    path = Path(bundle) if bundle else Path(cfg.output_dir) / cfg.name
    try:
        idf = Identifier.from_bundle(path)
    except PillsnapError as exc:
        print(f"pillsnap-train: {exc}", file=sys.stderr)
        return 2
    val = rel.gt_images("val")
    rows = evaluate_robustness(
        idf,
        val,
        plain_table=scenes,
        dense_piles=piles,
        seed=cfg.seed + 1234,
        progress=lambda name: print(f"[robustness] {name}", file=sys.stderr),
    )
    ref = f"{idf.manifest.name}@{idf.manifest.version}"
    print(f"## Robustness of {ref} (validation split of {cfg.work_dir})\n")
    print(format_table([r.as_dict() for r in rows]))
    if json_out:
        Path(json_out).write_text(
            json.dumps({"bundle": ref, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n"
        )
    return 0


def _summary(results: dict[str, dict[str, Any]]) -> None:
    print("\n== summary ==")
    for step, info in results.items():
        print(f"  {step:<17} {info.get('seconds', '-')!s:>7} s")
    pkg = results.get("package")
    if pkg:
        for gate in pkg.get("gates", []):
            print(f"  gate {gate['name']:<34} {gate['status']:<8} {gate['detail']}")
        print(
            f"  bundle: {pkg.get('published')}\n  zip:    {pkg.get('zip')}\n"
            f"  report: {pkg.get('report')}"
        )
    else:
        print(json.dumps({k: v for k, v in results.items()}, default=str)[:2000])


if __name__ == "__main__":
    raise SystemExit(main())
