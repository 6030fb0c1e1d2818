"""Step ``variants``: fp16 / int8 classifiers, each released only if it passes its gate."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..export.names import CLASSIFIER_INPUT
from .crops import classifier_spec, crop_batches
from .data import ReleaseData
from .results import ExportResult, VariantsResult
from .workdir import log

__all__ = ["variants"]


def variants(data: ReleaseData, exp: ExportResult) -> VariantsResult:
    """Build each configured precision from the fp32 export (int8 calibrated on seeded
    train crops) and gate it on the validation crops; a failed build is not released."""
    from ..export.variants import gate_variant, make_fp16, make_int8

    cfg = data.cfg
    fp32 = Path(exp.classifier)
    x, y = crop_batches(data, "val")
    train_x, _ = crop_batches(data, "train")
    rng = np.random.default_rng(cfg.seed)
    n_cal = min(cfg.export.int8_calibration_crops, len(train_x))
    calib = train_x[rng.choice(len(train_x), n_cal, replace=False)] if n_cal else train_x
    calib_batches = [calib[i : i + 16] for i in range(0, len(calib), 16)]
    eval_batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)]
    timing = x[:8] if len(x) else np.zeros((8, 3, *classifier_spec(cfg).size), np.float32)
    reports: list[dict[str, Any]] = []
    for precision in cfg.export.variants:
        dst = fp32.with_name(f"classifier_{precision}.onnx")
        try:
            if precision == "fp16":
                make_fp16(fp32, dst)
            else:
                make_int8(fp32, dst, CLASSIFIER_INPUT, calib_batches)
            rep = gate_variant(
                precision,
                dst,
                fp32,
                CLASSIFIER_INPUT,
                eval_batches,
                timing,
                max_top1_drop=cfg.gates.max_variant_top1_drop,
            )
            reports.append(asdict(rep))
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
    return VariantsResult(variants=reports)
