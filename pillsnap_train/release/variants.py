"""Step ``variants``: fp16 / int8 classifiers, each released only if it passes its gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..export.names import CLASSIFIER_INPUT
from .crops import crop_batches
from .data import ReleaseData
from .results import ExportResult, VariantsResult
from .workdir import log

__all__ = ["build_gated_variants", "variants"]


def variants(data: ReleaseData, exp: ExportResult) -> VariantsResult:
    """Build each configured precision from the fp32 export (int8 calibrated on seeded
    train crops, ``export.int8``) and gate it on the validation crops."""
    return VariantsResult(variants=build_gated_variants(data, Path(exp.classifier)))


def build_gated_variants(data: ReleaseData, fp32: Path) -> list[dict[str, Any]]:
    """The config's variants of the fp32 classifier at ``fp32``, written beside it, each
    with its gate report. One place for the release step and ``bundle add-variants``, so a
    variant added later is built and gated exactly as a release would."""
    from ..export.variants import build_and_gate

    cfg = data.cfg
    train_x, _ = crop_batches(data, "train")
    return build_and_gate(
        fp32,
        cfg.export.variants,
        input_name=CLASSIFIER_INPUT,
        val=crop_batches(data, "val"),
        train_x=train_x,
        int8=cfg.export.int8_options,
        seed=cfg.seed,
        max_top1_drop=cfg.gates.max_variant_top1_drop,
        log=log,
    )
