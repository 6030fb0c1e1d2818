"""INT8 classifier: which layers to keep in float and how to calibrate, measured.

Two modes, both on a release's own data (``pillsnap-train ingest --config CFG`` first; no
model is trained):

* ``sweep``: for each calibration method x keep-float set, build the static QDQ
  classifier from the bundle's fp32 one (calibrated on training crops only) and report
  top-1 on the grouped validation crops (drop vs fp32, the release gate's number), time
  vs fp32 at batch 1 and batch 22 (interleaved rounds, medians), and size.
* ``compare``: the bundle's classifier precisions through the SDK on the validation
  photos (end to end: found, identified, confidently wrong) and on the clean and
  camera-shifted validation crops with the bundle's thresholds.

    python scripts/int8_sweep.py sweep --config configs/pushin-pill-edge.yaml \\
        --bundle models/pushin-pill-edge --json-out int8_sweep.json
    python scripts/int8_sweep.py compare --config configs/pushin-pill-edge.yaml \\
        --bundle models/pushin-pill-edge

``--work-dir`` points the config at another work dir (e.g. a scratch ingest).
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
DEFAULT_SETS = ["", "stem", "stem,head", "stem,head,last_conv", "stem,head,depthwise"]


def _config(path: str, work_dir: str | None) -> Any:
    from pillsnap_train.config import load_config

    cfg = load_config(path)
    return cfg.model_copy(update={"work_dir": work_dir}) if work_dir else cfg


def _crops(cfg: Any) -> tuple[F32, npt.NDArray[np.int64], F32]:
    from pillsnap_train.release import Release
    from pillsnap_train.release.crops import crop_batches

    rel = Release(cfg, read_only=True)
    if rel.done("ingest") is None:
        sys.exit(f"no ingested data in {rel.work}: run `pillsnap-train ingest --config ...`")
    vx, vy = crop_batches(rel, "val")
    tx, _ = crop_batches(rel, "train")
    return vx, vy, tx


def _top1(path: Path, x: F32, y: npt.NDArray[np.int64]) -> float:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pred = np.concatenate(
        [s.run(None, {"input": x[i : i + 64]})[0].argmax(1) for i in range(0, len(x), 64)]
    )
    return float((pred == y).mean())


def _time_ratio(fp32: Path, q: Path, batch: F32, rounds: int) -> tuple[float, float, float]:
    """Median ms of fp32 and int8 on ``batch`` (alternating runs), and their ratio."""
    import onnxruntime as ort

    sa = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    feed = {"input": batch}
    sa.run(None, feed), sb.run(None, feed)
    ta, tb = [], []
    for _ in range(rounds):
        for sess, out in ((sa, ta), (sb, tb)):
            t = time.perf_counter()
            sess.run(None, feed)
            out.append(time.perf_counter() - t)
    a, b = float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3
    return a, b, b / a


def sweep(args: argparse.Namespace) -> None:
    from pillsnap_sdk.bundle.loader import load_bundle
    from pillsnap_train.export.int8 import Int8Options, build_int8, calibration_sample

    cfg = _config(args.config, args.work_dir)
    bundle = load_bundle(args.bundle)
    vx, vy, tx = _crops(cfg)
    calib = calibration_sample(tx, args.crops, cfg.seed)
    cache_ok = "calibration_cache_path" in inspect.signature(_quantize_static()).parameters
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="int8-sweep-") as tmp:
        fp32 = Path(tmp) / "classifier.onnx"
        fp32.write_bytes(bundle.model_bytes(bundle.manifest.classifier.file))
        base = _top1(fp32, vx, vy)
        print(
            f"fp32 top-1 {base:.4f} on {len(vy)} validation crops; {len(calib)} calibration crops "
            f"of {len(tx)} training crops",
            file=sys.stderr,
        )
        for method in args.methods.split(","):
            cache = Path(tmp) / f"ranges-{method}.json" if cache_ok else None
            for keep in args.sets:
                groups = [g for g in keep.split(",") if g]
                opts = Int8Options(
                    keep_float=groups,
                    calibration=method,
                    calibration_crops=args.crops,
                    reduce_range=not args.full_range,
                )
                dst = Path(tmp) / "q.onnx"
                t = time.perf_counter()
                made = build_int8(fp32, dst, "input", calib, opts, calibration_cache=cache)
                build_s = time.perf_counter() - t
                top1 = _top1(dst, vx, vy)
                b1 = _time_ratio(fp32, dst, vx[:1], args.rounds)
                b22 = _time_ratio(fp32, dst, vx[:22], args.rounds)
                row = {
                    "keep_float": keep or "(none)",
                    "calibration": method,
                    "top1": top1,
                    "drop_pt": 100 * (base - top1),
                    "b1_ms": b1[:2],
                    "b1_ratio": b1[2],
                    "b22_ms": b22[:2],
                    "b22_ratio": b22[2],
                    "size_mb": dst.stat().st_size / 1e6,
                    "size_ratio": dst.stat().st_size / fp32.stat().st_size,
                    "kept_nodes": len(made.kept_float),
                    "build_s": build_s,
                }
                rows.append(row)
                print(_row(row), file=sys.stderr, flush=True)
                _write(args.json_out, cfg, bundle, base, vy, calib, args, rows)
    _write(args.json_out, cfg, bundle, base, vy, calib, args, rows)
    print(_table(rows))


def _write(
    out: str | None, cfg: Any, bundle: Any, base: float, vy: Any, calib: F32, args: Any, rows: Any
) -> None:
    """The JSON so far (rewritten after every row: a long sweep can be stopped)."""
    if not out:
        return
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()} {platform.processor()}, {_cpus()} CPUs",
        "bundle": f"{bundle.manifest.name}@{bundle.manifest.version}",
        "fp32_top1": base,
        "n_val": len(vy),
        "n_calibration": len(calib),
        "reduce_range": not args.full_range,
        "rows": rows,
    }
    Path(out).write_text(json.dumps(doc, indent=2) + "\n")


def _quantize_static() -> Any:
    from onnxruntime.quantization import quantize_static

    return quantize_static


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _row(r: dict[str, Any]) -> str:
    return (
        f"| {r['keep_float']} | {r['calibration']} | {100 * r['top1']:.1f} % | "
        f"{r['drop_pt']:.2f} | {r['b1_ratio']:.2f} | {r['b22_ratio']:.2f} | "
        f"{r['size_mb']:.1f} MB ({r['size_ratio']:.2f}x) |"
    )


def _table(rows: list[dict[str, Any]]) -> str:
    head = [
        "| kept in float | calibration | top-1 | drop (pt) | time b1 vs fp32 | time b22 vs fp32 "
        "| size |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(head + [_row(r) for r in rows])


def compare(args: argparse.Namespace) -> None:
    from pillsnap_sdk import Identifier
    from pillsnap_sdk.bundle.loader import load_bundle
    from pillsnap_sdk.bundle.variants import available_precisions, select_precision
    from pillsnap_train.calibrate import abstention_report
    from pillsnap_train.evaluate import score_pipeline
    from pillsnap_train.release import Release
    from pillsnap_train.release.crops import crop_batches, shifted_crop_batches

    cfg = _config(args.config, args.work_dir)
    rel = Release(cfg, read_only=True)
    bundle = load_bundle(args.bundle)
    th = bundle.manifest.thresholds
    val = rel.gt_images("val")
    cx, cy = crop_batches(rel, "val")
    sx, sy = shifted_crop_batches(rel, "val")
    out: dict[str, Any] = {"bundle": f"{bundle.manifest.name}@{bundle.manifest.version}"}
    for precision in available_precisions(bundle):
        import onnxruntime as ort

        spec = select_precision(bundle, precision).manifest.classifier
        sess = ort.InferenceSession(
            bundle.model_bytes(spec.file), providers=["CPUExecutionProvider"]
        )

        idf = Identifier.from_bundle(args.bundle, precision=precision)
        score = score_pipeline(idf.identify, val).as_dict()
        pc, ps = (
            _probs(sess, spec.input_name, cx, th.temperature),
            _probs(sess, spec.input_name, sx, th.temperature),
        )
        out[precision] = {
            "end_to_end": {
                k: score[k]
                for k in (
                    "n_pills",
                    "found",
                    "correct",
                    "unknown",
                    "confidently_wrong",
                    "end_to_end_accuracy",
                    "confident_wrong_rate",
                )
            },
            "crops_top1": float((pc.argmax(1) == cy).mean()),
            "clean_crops": abstention_report(pc, cy, th.unknown_threshold, th.unknown_margin),
            "shifted_crops": abstention_report(ps, sy, th.unknown_threshold, th.unknown_margin),
        }
        print(precision, json.dumps(out[precision]), file=sys.stderr, flush=True)
    text = json.dumps(out, indent=2) + "\n"
    sys.stdout.write(text)
    if args.json_out:
        Path(args.json_out).write_text(text)


def _probs(sess: Any, input_name: str, x: F32, temperature: float) -> F32:
    from pillsnap_sdk.postprocess import calibrated_softmax

    lo = [sess.run(None, {input_name: x[i : i + 64]})[0] for i in range(0, len(x), 64)]
    return calibrated_softmax(np.concatenate(lo), temperature)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("sweep", "compare"):
        sp = sub.add_parser(name)
        sp.add_argument("--config", default="configs/pushin-pill-edge.yaml")
        sp.add_argument("--bundle", default="models/pushin-pill-edge")
        sp.add_argument("--work-dir", help="the config's work_dir (default: as in the config)")
        sp.add_argument("--json-out")
    sw = sub.choices["sweep"]
    sw.add_argument("--methods", default="minmax,percentile,entropy")
    sw.add_argument(
        "--sets", nargs="+", default=DEFAULT_SETS, help="comma-separated keep-float roles"
    )
    sw.add_argument("--crops", type=int, default=512, help="training crops to calibrate on")
    sw.add_argument("--rounds", type=int, default=10)
    sw.add_argument("--full-range", action="store_true", help="8-bit weights (no reduce_range)")
    args = p.parse_args()
    sweep(args) if args.mode == "sweep" else compare(args)


if __name__ == "__main__":
    main()
