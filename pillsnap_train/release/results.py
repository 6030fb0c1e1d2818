"""Typed results of the release steps: what each ``steps/<step>.json`` marker holds.

The markers are the contract between steps (and with work dirs written by earlier
versions), so the keys here are the ones the markers have always had (one renamed key,
``ingest``'s ``manifest`` -> ``records``, is still read under its old name); a step
builds its result with every key it writes, and :meth:`WorkDir.step
<.workdir.WorkDir.step>` dumps only those (``exclude_unset``), plus ``seconds``.
Nested records (histories, per-class rows, gate rows) stay plain JSON data.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

__all__ = [
    "CalibrateResult",
    "ExportResult",
    "IngestResult",
    "PackageResult",
    "StepResult",
    "TrainClassifierResult",
    "TrainDetectorResult",
    "VariantsResult",
]


class StepResult(BaseModel):
    """Common base: markers read back from disk also carry the step's ``seconds``."""

    model_config = ConfigDict(extra="forbid")

    seconds: float | None = None


class IngestResult(StepResult):
    #: The records CSV. Markers written before the rename call it ``manifest``; they are
    #: read as they are, new markers say ``records``.
    records: str = Field(validation_alias=AliasChoices("records", "manifest"))
    report_file: str
    images: Any
    boxes: Any
    skipped: int
    skipped_counts: list[dict[str, int]]
    subset: dict[str, Any] | None
    dataset_sha256: str
    detector_extra: dict[str, Any] | None


class TrainClassifierResult(StepResult):
    best: str
    best_val_top1: float
    history: list[dict[str, Any]]
    #: Pill-free crops trained toward uniform (``classifier.negatives``); 0 when off.
    negatives: int = 0


class TrainDetectorResult(StepResult):
    enabled: bool
    best: str | None = None
    #: Val AP@0.5 of each stage's kept epoch (``train``, ``finetune``); the better ships.
    stage_ap50: dict[str, float] | None = None
    #: The stage whose weights ship.
    kept_stage: str | None = None


class ExportResult(StepResult):
    classifier: str
    detector: str | None = None
    #: The familiarity gate folded into the classifier (``calibration.familiarity_keep``):
    #: its stats file, cut, ramp end and validation share kept; None without a gate.
    familiarity: dict[str, Any] | None = None


class CalibrateResult(StepResult):
    temperature: float
    ece_before: float
    ece_after: float
    unknown: dict[str, Any]
    abstention: dict[str, Any] | None
    background_reject: float | None
    n_background: int
    #: Pill-free crops next to the validation photos' pills (fingertips, creases, edges:
    #: where the detector's false boxes fall) refused as unknown; None in older reports.
    near_pill_reject: float | None = None
    n_near_pill: int = 0
    val_top1: float
    val_top5: float
    per_class: list[dict[str, Any]]
    detector: dict[str, Any] | None = None


class VariantsResult(StepResult):
    variants: list[dict[str, Any]]


class PackageResult(StepResult):
    bundle: str
    zip: str
    report: str
    gates: list[dict[str, Any]]
    published: str | None
