"""``pillsnap`` command line: identify photos, inspect and verify bundles, benchmark, serve.

Exit codes: 0 success; 1 a photo or bundle was refused (the message says why);
2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .batch.inputs import expand_inputs
from .bundle.loader import load_bundle
from .defaults import default_bundle_path
from .errors import BundleError, InvalidArgumentError, InvalidImageError, PillsnapError
from .pipeline import Identifier
from .results import IdentifyResult
from .version import __version__

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pillsnap", description="Identify pills in photos.")
    p.add_argument("--version", action="version", version=f"pillsnap {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    ident = sub.add_parser("identify", help="identify the pills in one or more photos")
    ident.add_argument(
        "images",
        nargs="+",
        metavar="INPUT",
        help="photo, folder (recursive), glob, LIST.txt (one path per line) or - (stdin)",
    )
    ident.add_argument("--bundle", type=Path, help="bundle dir or .zip (default: models/)")
    ident.add_argument("--mode", choices=["auto", "single", "combo"], default="auto")
    ident.add_argument("--top-k", type=int, default=3)
    ident.add_argument("--json", action="store_true", help="one JSON object per image")
    ident.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT",
        help="write a picture with boxes and names (a .png file; a folder for several images)",
    )
    ident.add_argument(
        "--threads", type=_positive_int, default=None, help="onnxruntime intra-op threads"
    )
    ident.add_argument(
        "--jsonl",
        type=Path,
        metavar="OUT",
        help="archive run: append one JSON line per photo to OUT; re-running skips done photos",
    )
    ident.add_argument(
        "--workers", type=_positive_int, default=1, help="with --jsonl: worker processes"
    )

    bundle = sub.add_parser("bundle", help="inspect or verify a model bundle")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)
    info = bsub.add_parser("info", help="print a bundle's manifest summary")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true")
    verify = bsub.add_parser("verify", help="check hashes, file list, versions and models")
    verify.add_argument("path", type=Path)

    from .bench.cli import add_bench_arguments

    bench = sub.add_parser("bench", help="latency of the SDK against the onnxruntime floor")
    add_bench_arguments(bench)

    # Everything after `serve` goes to pillsnap_sdk.serve.cli, imported only when it runs
    # (the serve extra is optional); `pillsnap serve --help` shows its flags.
    serve = sub.add_parser(
        "serve",
        add_help=False,
        help="HTTP service and kiosk page (needs the serve extra); `serve keygen ID` makes keys",
    )
    serve.add_argument("serve_args", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["serve"]:  # its own parser (argparse.REMAINDER drops leading --flags)
        from .serve.cli import main as serve_main

        return serve_main(raw[1:])
    args = _parser().parse_args(raw)
    try:
        if args.command == "identify":
            return _identify(args)
        if args.command == "bundle":
            return _bundle(args)
        if args.command == "bench":
            from .bench.cli import run_cli_bench_args

            return run_cli_bench_args(args)
    except PillsnapError as exc:
        print(f"pillsnap: error: {exc}", file=sys.stderr)
        return 1
    return 2


def _identify(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        print("pillsnap: error: --top-k must be >= 1", file=sys.stderr)
        return 2
    if args.jsonl or args.workers > 1:
        from .batch.cli import identify_jsonl

        return identify_jsonl(args)
    idf = Identifier.from_bundle(
        args.bundle or default_bundle_path(), intra_op_threads=args.threads
    )
    failed = 0
    items = list(expand_inputs(args.images))
    if not items:
        raise InvalidArgumentError(f"no images found in {' '.join(args.images)[:500]}")
    for item in items:
        path = Path(item.name)
        try:
            res = idf.identify(item.source, mode=args.mode, top_k=args.top_k)
        except InvalidImageError as exc:
            failed += 1
            if args.json:
                print(json.dumps({"image": str(path), "error": str(exc)}))
            else:
                print(f"{path}: error: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"image": str(path), **res.model_dump(mode="json")}))
        else:
            print(_table(path, res))
        if args.annotate:
            from .annotate import save_annotated

            out = args.annotate
            if len(items) > 1 or out.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                out = out / f"{path.stem}.annotated.png"
            save_annotated(item.source, res, out)
            if not args.json:
                print(f"  annotated picture: {out}")
    return 1 if failed else 0


def _table(path: Path, res: IdentifyResult) -> str:
    w, h = res.image_size
    lines = [
        f"{path}  ({w}x{h}, mode={res.mode_used}, {len(res.pills)} pill(s), "
        f"{res.timings_ms.get('total', 0.0):.0f} ms, bundle {res.bundle.name} "
        f"{res.bundle.version})"
    ]
    if res.warnings:
        lines.append(f"  warnings: {', '.join(res.warnings)}")
    lines.append(
        f"  {'#':>2}  {'name':<22} {'code':<16} {'conf':>5}  {'box (x1,y1,x2,y2)':<24} alternatives"
    )
    for i, pill in enumerate(res.pills, 1):
        best = pill.candidates[0]
        name = best.name if pill.label else f"unknown ({best.name}?)"
        box = ",".join(f"{v:.0f}" for v in pill.bbox.as_tuple()) if pill.bbox else "whole photo"
        alts = ", ".join(f"{c.name} {c.confidence:.0%}" for c in pill.candidates[1:])
        lines.append(
            f"  {i:>2}  {name:<22} {best.code:<16} {best.confidence:>5.0%}  {box:<24} {alts}"
        )
    return "\n".join(lines)


def _bundle(args: argparse.Namespace) -> int:
    if args.bundle_command == "info":
        b = load_bundle(args.path)
        m = b.manifest
        if args.json:
            print(m.model_dump_json(indent=2))
            return 0
        print(
            f"{m.name} {m.version} (schema {m.schema_version}, needs pillsnap >= "
            f"{m.min_sdk_version}, created {m.created_at:%Y-%m-%d})"
        )
        for role, spec in (("classifier", m.classifier), ("detector", m.detector)):
            if spec:
                pp = spec.preprocessing
                print(
                    f"  {role}: {spec.file} {spec.precision} input {spec.input_shape} "
                    f"({pp.resize} {pp.size[1]}x{pp.size[0]})"
                )
        for v in m.variants:
            print(f"  variant: {v.role} {v.precision} {v.file}")
        t = m.thresholds
        print(
            f"  thresholds: T={t.temperature:.3f} unknown<{t.unknown_threshold:.2f} "
            f"det_conf={t.detector_confidence:.2f} nms={t.nms_iou:.2f}"
        )
        print(f"  classes: {len(b.labels.classes)}")
        for credit in m.data:
            print(f"  data: {credit.name} ({credit.licence}) {credit.source}")
        return 0
    # verify: integrity first, then build the sessions (input shapes vs manifest).
    try:
        Identifier.from_bundle(args.path)
    except BundleError as exc:
        print(f"REFUSED {args.path}: {exc}")
        return 1
    print(f"OK {args.path}: all file hashes, versions and model inputs match the manifest")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
