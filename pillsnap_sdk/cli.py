"""``pillsnap`` command line: identify photos, inspect and verify bundles, benchmark, serve.

Exit codes: 0 success; 1 a photo or bundle was refused (the message says why);
2 usage error; 141 stdout was closed early (e.g. ``| head``), as for SIGPIPE.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from .batch.inputs import expand_inputs
from .bundle.loader import load_bundle
from .bundle.variants import PRECISION_ENV, select_precision
from .defaults import default_bundle_path, resolve_bundle
from .errors import BundleError, InvalidArgumentError, InvalidImageError, PillsnapError
from .pipeline import Identifier
from .results import IdentifyResult
from .version import __version__

__all__ = ["main"]


def safe(text: object) -> str:
    """Text fit for an operator's terminal: control and format characters escaped.

    Label names, codes and file names come from bundles and uploads; printed raw, an
    ``ESC [ ...`` sequence can rewrite the screen and U+202E can reverse what is shown.
    """
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch != "\n":
            out.append(ascii(ch)[1:-1])
        else:
            out.append(ch)
    return "".join(out)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _provider_list(text: str) -> list[str]:
    """``--providers openvino,cpu``: names resolved (short ones too) at parse time, so a
    typo is a usage error listing the valid names, before any model loads."""
    from .runtime import resolve_provider_name

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("names no provider; e.g. 'cuda,cpu'")
    try:
        return [resolve_provider_name(n) for n in names]
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_PROVIDERS_HELP = (
    "onnxruntime execution providers, comma-separated: cpu, cuda, tensorrt, openvino, coreml, "
    "directml or full names; one that cannot run is an error, not a CPU fallback "
    "(default: $PILLSNAP_PROVIDERS, else cpu)"
)


_EPILOG = """examples:
  pillsnap identify photo.jpg                      # the default bundle, a table per photo
  pillsnap identify a.jpg b.jpg --json > out.jsonl # one JSON object per photo on stdout
  pillsnap identify photo.jpg --bundle pushin-pill-edge --annotate out.png
  pillsnap identify *.jpg --coco results.json      # also a COCO file for the set
  pillsnap bundle verify models/pushin-pill-edge
  pillsnap schema result > result.schema.json

Without --bundle: $PILLSNAP_BUNDLE (path or installed bundle name), else models/DEFAULT
of a source checkout, else the installed bundle package (pillsnap.bundles).
Environment: PILLSNAP_PROVIDERS (e.g. cuda,cpu or openvino; what --providers overrides),
PILLSNAP_THREADS (onnxruntime threads per model), PILLSNAP_HOME (download cache).
"""


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


def _verbosity() -> argparse.ArgumentParser:
    """-q/-v accepted before or after the subcommand (SUPPRESS keeps the earlier one)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more detail on stderr (which bundle is used; -vv: debug logs)",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="only results and errors: no notes or warnings on stderr",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _verbosity()
    p = argparse.ArgumentParser(
        prog="pillsnap",
        description="Identify pills in photos.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
        parents=[common],
    )
    p.add_argument("--version", action="version", version=f"pillsnap {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    ident = sub.add_parser(
        "identify",
        help="identify the pills in one or more photos",
        epilog=_EPILOG,
        formatter_class=_Formatter,
        parents=[common],
    )
    ident.add_argument(
        "images",
        nargs="+",
        metavar="INPUT",
        help="photo, folder (recursive), glob, LIST.txt (one path per line) or - (stdin)",
    )
    ident.add_argument(
        "--bundle",
        help="bundle dir, .zip or installed bundle name (default: see below)",
    )
    ident.add_argument(
        "--mode",
        choices=["auto", "single", "combo"],
        default="auto",
        help="auto: detector decides; single: classify the whole photo; combo: crop detections",
    )
    ident.add_argument(
        "--top-k", type=_positive_int, default=5, help="candidates listed per pill (as the API)"
    )
    ident.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    ident.add_argument(
        "--coco", type=Path, metavar="FILE", help="also write all results as one COCO JSON file"
    )
    ident.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT",
        help="write a picture with boxes and names (a .png file; a folder for several images)",
    )
    ident.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="onnxruntime intra-op threads per model "
        "(default: $PILLSNAP_THREADS, else onnxruntime's)",
    )
    ident.add_argument("--providers", type=_provider_list, help=_PROVIDERS_HELP)
    ident.add_argument(
        "--precision",
        help="classifier precision variant of the bundle, e.g. int8 (default: "
        "$PILLSNAP_PRECISION, else the bundle's fp32 model)",
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

    bundle = sub.add_parser(
        "bundle", help="inspect or verify a model bundle", formatter_class=_Formatter
    )
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)
    info = bsub.add_parser("info", help="print a bundle's manifest summary", parents=[common])
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="the manifest as JSON on stdout")
    verify = bsub.add_parser(
        "verify", help="check hashes, file list, versions and models", parents=[common]
    )
    verify.add_argument("path", type=Path)

    schema = sub.add_parser(
        "schema", help="print a JSON Schema (results or bundle manifest)", parents=[common]
    )
    schema.add_argument("which", choices=["result", "manifest"])

    bench = sub.add_parser(
        "bench",
        help="latency of the SDK against the onnxruntime floor",
        formatter_class=_Formatter,
        parents=[common],
    )
    bench_arguments(bench)

    # Everything after `serve` goes to pillsnap_sdk.serve.cli, imported only when it runs
    # (the serve extra is optional); `pillsnap serve --help` shows its flags.
    serve = sub.add_parser(
        "serve",
        add_help=False,
        help="HTTP service and kiosk page (needs the serve extra); `serve keygen ID` makes keys",
    )
    serve.add_argument("serve_args", nargs=argparse.REMAINDER)
    return p


def bench_arguments(p: argparse.ArgumentParser) -> None:
    """``pillsnap bench``: what a kiosk vendor measures on their own box (onnxruntime only).

    Peers, precision variants and the regression gate are the repository's
    ``python -m benchmarks`` (it adds those options to these).
    """
    p.add_argument("--bundle", type=Path, help="bundle dir or .zip (default: models/)")
    p.add_argument("--json", action="store_true", help="the full report as JSON (CI history)")
    p.add_argument("--json-out", type=Path, metavar="FILE", help="also write the JSON report here")
    p.add_argument("--rounds", type=int, default=None, help="rounds per measurement (20; quick 7)")
    p.add_argument("--quick", action="store_true", help="SDK vs floor and profiles only")
    p.add_argument("--images", type=Path, help="photo folder (YOLO layout) for the two scenes")
    p.add_argument("--profile", help="check only this device profile")
    p.add_argument("--profiles-file", type=Path, help="device profiles file (JSON or YAML)")
    p.add_argument("--providers", type=_provider_list, help=_PROVIDERS_HELP)
    p.add_argument(
        "--precision",
        help="classifier precision variant to measure, e.g. int8 (default: "
        "$PILLSNAP_PRECISION, else the bundle's fp32 model)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a reader that closes stdout early (``| head``) ends it quietly."""
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass  # stdout is not a real file (tests): nothing to flush at exit
        return 141


def _setup_logging(args: argparse.Namespace) -> None:
    verbose = int(getattr(args, "verbose", 0) or 0)
    level = logging.ERROR if getattr(args, "quiet", False) else logging.WARNING
    if verbose:
        level = logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="pillsnap: %(message)s")
    logging.getLogger("pillsnap_sdk").setLevel(level)


def _main(argv: Sequence[str] | None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["serve"]:  # its own parser (argparse.REMAINDER drops leading --flags)
        from .serve.cli import main as serve_main

        return serve_main(raw[1:])
    args = _parser().parse_args(raw)
    _setup_logging(args)
    try:
        if args.command == "identify":
            return _identify(args)
        if args.command == "bundle":
            return _bundle(args)
        if args.command == "schema":
            return _schema(args.which)
        if args.command == "bench":
            from .bench.cli import run_cli_bench_args

            return run_cli_bench_args(args)
    except _UsageError as exc:
        print(f"pillsnap: error: {safe(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # the reader went away: handled (exit 141) by main()
    except (PillsnapError, OSError) as exc:
        print(f"pillsnap: error: {safe(exc)}", file=sys.stderr)
        return 1
    return 2


def _schema(which: str) -> int:
    if which == "result":
        from .result_schema import render
    else:
        from .bundle.schema import render
    sys.stdout.write(render())
    return 0


class _UsageError(Exception):
    """A bad combination of command-line options (exit code 2)."""


def _annotate_target(out: Path | None, n_images: int) -> Path | None:
    """Check ``--annotate`` before any photo is processed: a folder for several photos
    (created if missing), else a writable picture name with a known extension."""
    if out is None:
        return None
    if n_images > 1 or out.is_dir():
        if out.exists() and not out.is_dir():
            raise _UsageError(f"--annotate {out} is a file; give a folder for several photos")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _UsageError(f"--annotate: cannot create folder {out}: {exc}") from exc
        return out
    from .annotate import SUFFIXES

    if out.suffix.lower() not in SUFFIXES:
        raise _UsageError(
            f"--annotate {out}: unknown picture extension {out.suffix!r}; use one of "
            f"{', '.join(SUFFIXES)}"
        )
    if not out.parent.is_dir():
        raise _UsageError(f"--annotate {out}: folder {out.parent} does not exist")
    return out


def _identify(args: argparse.Namespace) -> int:
    if args.providers and (args.jsonl or args.workers > 1):
        # The worker processes build their Identifiers from the environment they inherit.
        os.environ["PILLSNAP_PROVIDERS"] = ",".join(args.providers)
    if args.jsonl or args.workers > 1:
        from .batch.cli import identify_jsonl

        if not args.precision:
            return identify_jsonl(args)
        # Checked here (a worker's failed start would stop the pool), then handed to the
        # workers, which read $PILLSNAP_PRECISION, for this run only.
        select_precision(
            load_bundle(resolve_bundle(args.bundle) if args.bundle else default_bundle_path()),
            args.precision,
        )
        old = os.environ.get(PRECISION_ENV)
        os.environ[PRECISION_ENV] = args.precision
        try:
            return identify_jsonl(args)
        finally:
            if old is None:
                os.environ.pop(PRECISION_ENV, None)
            else:
                os.environ[PRECISION_ENV] = old
    quiet = bool(getattr(args, "quiet", False))
    items = list(expand_inputs(args.images))
    if not items:
        raise InvalidArgumentError(f"no images found in {' '.join(args.images)[:500]}")
    annotate_to = _annotate_target(args.annotate, len(items))
    source = resolve_bundle(args.bundle) if args.bundle else default_bundle_path()
    idf = Identifier.from_bundle(
        source,
        intra_op_threads=args.threads,
        providers=args.providers,
        strict_providers=args.providers is not None,
        precision=args.precision,
    )
    logging.getLogger("pillsnap_sdk").info(
        "bundle %s %s from %s", idf.manifest.name, idf.manifest.version, source
    )
    failed = 0
    done: list[tuple[str, IdentifyResult]] = []
    for item in items:
        path = Path(item.name)
        try:
            res = idf.identify(item.source, mode=args.mode, top_k=args.top_k)
        except InvalidImageError as exc:
            failed += 1
            if args.json:
                print(json.dumps({"image": str(path), "error": str(exc)}))
            else:
                print(f"{safe(path)}: error: {safe(exc)}", file=sys.stderr)
            continue
        done.append((str(path), res))
        if args.json:
            print(json.dumps({"image": str(path), **res.model_dump(mode="json")}))
        else:
            print(_table(path, res))
        if annotate_to is not None:
            from .annotate import save_annotated

            out = annotate_to
            if out.is_dir():
                out = out / f"{path.stem}.annotated.png"
            try:
                save_annotated(item.source, res, out)
            except Exception as exc:  # OSError, cv2.error: unwritable, full disk...
                failed += 1
                print(
                    f"{safe(path)}: error: cannot write {safe(out)}: {safe(exc)}", file=sys.stderr
                )
                continue
            if not args.json and not quiet:
                print(f"  annotated picture: {safe(out)}")
    if args.coco:
        from .interop import to_coco

        doc = to_coco([r for _, r in done], [n for n, _ in done], idf.labels)
        try:
            args.coco.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"pillsnap: error: cannot write {args.coco}: {exc}", file=sys.stderr)
            return 1
    return 1 if failed else 0


def _table(path: Path, res: IdentifyResult) -> str:
    w, h = res.image_size
    lines = [
        f"{safe(path)}  ({w}x{h}, mode={res.mode_used}, {len(res.pills)} pill(s), "
        f"{res.timings_ms.get('total', 0.0):.0f} ms, bundle {safe(res.bundle.name)} "
        f"{safe(res.bundle.version)})"
    ]
    if res.warnings:
        lines.append(f"  warnings: {safe(', '.join(res.warnings))}")
    lines.append(
        f"  {'#':>2}  {'name':<22} {'code':<16} {'conf':>5}  {'box (x1,y1,x2,y2)':<24} alternatives"
    )
    for i, pill in enumerate(res.pills, 1):
        best = pill.candidates[0]
        name = safe(best.name) if pill.label else f"unknown ({safe(best.name)}?)"
        box = ",".join(f"{v:.0f}" for v in pill.bbox.as_tuple()) if pill.bbox else "whole photo"
        alts = ", ".join(f"{safe(c.name)} {c.confidence:.0%}" for c in pill.candidates[1:])
        code = safe(best.code)
        lines.append(f"  {i:>2}  {name:<22} {code:<16} {best.confidence:>5.0%}  {box:<24} {alts}")
    return "\n".join(lines)


def _bundle(args: argparse.Namespace) -> int:
    if args.bundle_command == "info":
        b = load_bundle(args.path)
        m = b.manifest
        if args.json:
            print(m.model_dump_json(indent=2))
            return 0
        print(
            f"{safe(m.name)} {safe(m.version)} (schema {m.schema_version}, needs pillsnap >= "
            f"{m.min_sdk_version}, created {m.created_at:%Y-%m-%d})"
        )
        for role, spec in (("classifier", m.classifier), ("detector", m.detector)):
            if spec:
                pp = spec.preprocessing
                print(
                    f"  {role}: {safe(spec.file)} {spec.precision} input {safe(spec.input_shape)} "
                    f"({pp.resize} {pp.size[1]}x{pp.size[0]})"
                )
        for v in m.variants:
            print(f"  variant: {v.role} {v.precision} {safe(v.file)}")
        t = m.thresholds
        print(
            f"  thresholds: T={t.temperature:.3f} unknown<{t.unknown_threshold:.2f} "
            f"det_conf={t.detector_confidence:.2f} nms={t.nms_iou:.2f}"
            + (
                ""
                if t.detector_confidence_named is None
                else f" named_tier>={t.detector_confidence_named:.2f}"
            )
        )
        print(f"  classes: {len(b.labels.classes)}")
        for credit in m.data:
            print(f"  data: {safe(credit.name)} ({safe(credit.licence)}) {safe(credit.source)}")
        return 0
    # verify: integrity first, then build the sessions (input shapes vs manifest).
    try:
        Identifier.from_bundle(args.path)
    except BundleError as exc:
        print(f"REFUSED {safe(args.path)}: {safe(exc)}")
        return 1
    print(
        f"OK {safe(args.path)}: all file hashes, versions, thresholds and model inputs and "
        "outputs match the manifest"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
