"""Precision variants (fp16, static INT8 QDQ) and the gate that decides their release.

A variant ships only if its top-1 is within ``max_top1_drop`` of fp32 *and* it is faster
or smaller on the device it was measured on. Speed is measured, never assumed: INT8 made
efficientnet_b0 slower on this CPU while it made resnet18 3x faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

__all__ = ["VariantReport", "gate_variant", "make_fp16", "make_int8", "measure_onnx"]

F32 = npt.NDArray[np.float32]


def make_fp16(src: Path, dst: Path) -> Path:
    """fp16 weights and activations, fp32 inputs/outputs (callers feed the same tensors)."""
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, str(dst))
    return dst


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed real crops."""

    def __init__(self, input_name: str, batches: Sequence[F32]) -> None:
        self._items = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict[str, F32] | None:
        return next(self._items, None)


def make_int8(src: Path, dst: Path, input_name: str, calibration: Sequence[F32]) -> Path:
    """Static INT8 in QDQ format, per-channel weights, calibrated on real crops."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        base = pre
    except Exception:  # pre-processing is an optimisation only
        base = src
    quantize_static(
        str(base),
        str(dst),
        _Reader(input_name, calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    pre.unlink(missing_ok=True)
    return dst


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
        reason = f"{speedup:.2f}x speed, {size / base_size:.2f}x size, top-1 -{drop * 100:.2f} pt"
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
