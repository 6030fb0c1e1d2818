"""Precision variants (fp16, static INT8 QDQ) and the gate that decides their release.

A variant ships only if its top-1 is within ``max_top1_drop`` of fp32 *and* it is faster
or smaller on the device it was measured on. Speed is measured, never assumed: INT8 made
efficientnet_b0 slower on this CPU while it made resnet18 3x faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from .int8 import Int8Options, build_int8, calibration_sample

__all__ = [
    "VariantReport",
    "build_and_gate",
    "gate_variant",
    "make_fp16",
    "make_int8",
    "measure_onnx",
    "variant_table",
]

F32 = npt.NDArray[np.float32]


def make_fp16(src: Path, dst: Path) -> Path:
    """fp16 weights and activations, fp32 inputs/outputs (callers feed the same tensors)."""
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, str(dst))
    return dst


def make_int8(
    src: Path,
    dst: Path,
    input_name: str,
    calibration: F32 | Sequence[F32],
    options: Int8Options | None = None,
) -> Path:
    """Static INT8 in QDQ format, calibrated on real crops (see :mod:`.int8`; ``None``:
    its best measured settings)."""
    return build_int8(src, dst, input_name, calibration, options).path


def measure_onnx(
    path: Path, input_name: str, batch: F32, *, rounds: int = 10, threads: int | None = None
) -> tuple[F32, float]:
    """Logits for ``batch`` and the median seconds of one run (after a warm-up)."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = np.asarray(sess.run(None, {input_name: batch})[0], dtype=np.float32)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        sess.run(None, {input_name: batch})
        times.append(time.perf_counter() - t)
    return out, float(np.median(times))


@dataclass(frozen=True)
class VariantReport:
    precision: str
    file: str
    top1: float
    top1_drop: float
    latency_ms: float
    speedup: float
    size_bytes: int
    size_ratio: float
    released: bool
    reason: str


def gate_variant(
    precision: str,
    path: Path,
    fp32_path: Path,
    input_name: str,
    eval_batches: Sequence[tuple[F32, npt.NDArray[np.int64]]],
    timing_batch: F32,
    *,
    max_top1_drop: float = 0.01,
    rounds: int = 10,
    evaluate: Callable[[Path], float] | None = None,
) -> VariantReport:
    """Evaluate a variant on its own and decide whether it is released."""

    def top1(p: Path) -> float:
        if evaluate is not None:
            return evaluate(p)
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        hits = n = 0
        for x, y in eval_batches:
            logits = sess.run(None, {input_name: x})[0]
            hits += int((np.argmax(logits, axis=1) == y).sum())
            n += len(y)
        return hits / max(n, 1)

    base_top1, var_top1 = top1(fp32_path), top1(path)
    _, base_s = measure_onnx(fp32_path, input_name, timing_batch, rounds=rounds)
    _, var_s = measure_onnx(path, input_name, timing_batch, rounds=rounds)
    size, base_size = path.stat().st_size, fp32_path.stat().st_size
    drop = base_top1 - var_top1
    speedup = base_s / max(var_s, 1e-9)
    accurate = drop <= max_top1_drop
    better = speedup > 1.0 or size < base_size
    if not accurate:
        reason = f"top-1 drops {drop * 100:.2f} points (> {max_top1_drop * 100:.1f})"
    elif not better:
        reason = f"neither faster ({speedup:.2f}x) nor smaller"
    else:
        # signed: a variant can score above fp32 (2.5.0's int8: +1.63 pt), never "--1.63"
        reason = f"{speedup:.2f}x speed, {size / base_size:.2f}x size, top-1 {-drop * 100:+.2f} pt"
    return VariantReport(
        precision,
        path.name,
        var_top1,
        drop,
        var_s * 1000,
        speedup,
        size,
        size / base_size,
        accurate and better,
        reason,
    )


def build_and_gate(
    fp32: Path,
    precisions: Sequence[str],
    *,
    input_name: str,
    val: tuple[F32, npt.NDArray[np.int64]],
    train_x: F32,
    int8: Int8Options,
    seed: int,
    max_top1_drop: float,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Build each precision beside ``fp32`` and gate it on the validation crops ``val``.

    INT8 is calibrated on ``int8.calibration_crops`` crops of ``train_x`` (seeded), never
    on validation crops: the gate would otherwise score ranges fitted to its own test
    set. A variant that cannot be built is reported, not released. Shared by the
    release's ``variants`` step and ``pillsnap-train bundle add-variants``.
    """
    x, y = val
    eval_batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)]
    timing = x[:8] if len(x) else np.zeros((8, *train_x.shape[1:]), np.float32)
    calib = calibration_sample(train_x, int8.calibration_crops, seed)
    reports: list[dict[str, Any]] = []
    for precision in precisions:
        dst = fp32.with_name(f"classifier_{precision}.onnx")
        build: dict[str, Any] = {}
        try:
            if precision == "fp16":
                make_fp16(fp32, dst)
            else:
                made = build_int8(fp32, dst, input_name, calib, int8)
                build = {**int8.model_dump(), "n_calibration": len(calib)}
                build["kept_float_nodes"] = list(made.kept_float)
            rep = gate_variant(
                precision, dst, fp32, input_name, eval_batches, timing, max_top1_drop=max_top1_drop
            )
            reports.append({**asdict(rep), "build": build})
        except Exception as exc:  # a variant that cannot be built is simply not released
            reports.append(
                {
                    "precision": precision,
                    "file": dst.name,
                    "top1": 0.0,
                    "top1_drop": 1.0,
                    "latency_ms": 0.0,
                    "speedup": 0.0,
                    "size_bytes": 0,
                    "size_ratio": 0.0,
                    "released": False,
                    "reason": f"build failed: {exc}"[:200],
                }
            )
        log(f"variant {precision}: {reports[-1]['reason']}")
    return reports


def variant_table(variants: Sequence[dict[str, Any]]) -> list[str]:
    """The model card's "Precision variants" table (header and one row per variant)."""
    lines = [
        "| precision | top-1 | drop (pt) | latency (ms) | speed-up | size | released | why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        lines.append(
            f"| {v['precision']} | {100 * v['top1']:.1f} % | {100 * v['top1_drop']:.2f} | "
            f"{v['latency_ms']:.1f} | {v['speedup']:.2f}x | {v['size_bytes'] / 1e6:.1f} MB | "
            f"{'yes' if v['released'] else 'no'} | {v['reason']} |"
        )
    return lines
