"""Step ``variants``: fp16 / int8 classifiers, each released only if it passes its gate."""

from __future__ import annotations

from pathlib import Path

from ..export.names import CLASSIFIER_INPUT
from .crops import crop_batches
from .data import ReleaseData
from .results import ExportResult, VariantsResult
from .workdir import log

__all__ = ["variants"]


def variants(data: ReleaseData, exp: ExportResult) -> VariantsResult:
    """Build each configured precision from the fp32 export (int8 calibrated on seeded
    train crops, ``export.int8``) and gate it on the validation crops."""
    from ..export.variants import build_and_gate

    cfg = data.cfg
    train_x, _ = crop_batches(data, "train")
    reports = build_and_gate(
        Path(exp.classifier),
        cfg.export.variants,
        input_name=CLASSIFIER_INPUT,
        val=crop_batches(data, "val"),
        train_x=train_x,
        int8=cfg.export.int8_options,
        seed=cfg.seed,
        max_top1_drop=cfg.gates.max_variant_top1_drop,
        log=log,
    )
    return VariantsResult(variants=reports)
