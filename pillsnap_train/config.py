"""Release configuration: one YAML file says how a bundle is built, end to end.

Every field has a default that suits the small CPU setting; the file that built a bundle
is copied into its manifest's provenance so the bundle can be rebuilt exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field

from .cfgmodel import ConfigModel
from .classifier.train import ClassifierConfig
from .export.int8 import Int8Options

__all__ = [
    "CalibrationConfig",
    "DataConfig",
    "DetectorConfig",
    "ExportConfig",
    "GateConfig",
    "ReleaseConfig",
    "load_config",
]


class SourceConfig(ConfigModel):
    kind: Literal["yolo", "aihub"]
    path: str
    name: str | None = None


class CreditConfig(ConfigModel):
    name: str
    source: str
    licence: str
    attribution: str = ""


class DataConfig(ConfigModel):
    sources: list[SourceConfig]
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    holdout_classes: list[str] = Field(default_factory=list)
    max_classes: int | None = None
    max_samples: int | None = None
    single_combo_ratio: float | None = None
    #: Extra real photos for the detector only (class-agnostic "pill" boxes, no drug
    #: names): ingested into their own dataset CSV with their own grouped split, so the
    #: classifier's classes and its train/val split stay exactly those of ``sources``.
    detector_sources: list[SourceConfig] = Field(default_factory=list)
    credits: list[CreditConfig] = Field(default_factory=list)


class DetectorStage(ConfigModel):
    epochs: int = Field(ge=1)
    lr0: float = Field(0.001, gt=0)


class DetectorConfig(ConfigModel):
    enabled: bool = True
    model: str = "yolo11n.yaml"
    imgsz: int = 640
    epochs: int = 60
    batch: int = 16
    workers: int = 2
    synth_scenes: int = 0
    #: Fraction of the real train photos written with a camera/lighting shift (white balance,
    #: noise, JPEG, blur...; see ``photometric.photometric_jitter``) instead of as they are. Costs
    #: no training time; Ultralytics' HSV jitter alone left recall 15 pt lower under a
    #: white-balance cast (``pillsnap-train robustness``).
    photometric_fraction: float = Field(0.0, ge=0, le=1)
    #: Synthetic dense piles (25-40 touching, overlapping, mostly identical tablets on
    #: dark stone, cloth or a tray) added to train: 1.1.0 found 2-8 of 28-36 such pills on
    #: another camera's counting-tray photos; sparse scenes were fine.
    pile_scenes: int = Field(0, ge=0)
    #: torch intra-op threads for detector training (None: all CPUs, one fewer while a
    #: classifier trains beside it; Ultralytics alone would pin cpu_count - 1).
    threads: int | None = Field(None, ge=1)
    #: Second stage: continue from the first stage's best weights for this many epochs at
    #: ``finetune_lr0`` (a from-scratch YOLO on a small dataset is still improving when a
    #: CPU budget ends; a short low-lr stage is cheaper than a longer first stage).
    finetune_epochs: int = 0
    finetune_lr0: float = 0.002
    #: More low-lr stages after ``finetune``, each ``{epochs, lr0}`` from the best weights so
    #: far (``finetune2``, ``finetune3``...): a schedule can be lengthened without redoing
    #: the stages before it, and the better of old and new weights is kept.
    extra_stages: list[DetectorStage] = Field(default_factory=list)
    patience: int = 100
    extra: dict[str, Any] = Field(default_factory=dict, description="ultralytics train args")


class CalibrationConfig(ConfigModel):
    target_known_accept: float = Field(default=0.95, gt=0.0, le=1.0)
    #: With this set, the unknown threshold and margin are chosen to keep the share of
    #: validation crops (clean and camera-shifted) named wrongly at or below it, keeping as
    #: many right names as possible; ``target_known_accept`` is then not used. None: the
    #: 1.x rule (threshold for ``target_known_accept``, no margin).
    max_confident_wrong: float | None = Field(default=None, ge=0.0, le=1.0)
    nms_iou: float = 0.5
    max_detections: int = 100
    #: Detector threshold: maximise F-beta with this beta over the detector validation
    #: photos (1: F1, the <= 2.1.0 rule; 2: recall counts twice). A missed pill can never
    #: be named; a box on no pill comes back "unknown". Left out of the config's dump at
    #: 1.0, so existing work dirs keep their hash.
    detector_recall_weight: float = Field(default=1.0, gt=0.0, le=10.0)
    #: Second detector tier (SDK >= 0.5.0): boxes scored from this up to the chosen
    #: detector threshold are reported only when the classifier names them (see
    #: ``Thresholds.detector_confidence_named``); capped at that threshold. None: one tier.
    detector_confidence_named: float | None = Field(default=None, ge=0.01, le=1.0)
    #: Familiarity gate in the exported classifier (``classifier.familiarity``): the share
    #: of validation crops (clean and camera-shifted) whose logits pass untouched; crops
    #: farther from every trained drug than those come out flat ("unknown"). Chosen in the
    #: export step, before the temperature and thresholds. None: no gate.
    familiarity_keep: float | None = Field(default=None, gt=0.5, le=1.0)

    _omit_at: ClassVar[dict[str, Any]] = {
        "detector_recall_weight": 1.0,
        "detector_confidence_named": None,
        "familiarity_keep": None,
    }


class ExportConfig(ConfigModel):
    variants: list[Literal["fp16", "int8"]] = Field(default_factory=lambda: ["fp16", "int8"])  # type: ignore[arg-type]
    #: Crops of an INT8 build when ``int8`` is unset (the 2.0.0 recipe: every layer
    #: quantized, min-max ranges). Superseded by ``int8.calibration_crops``.
    int8_calibration_crops: int = 128
    #: How the INT8 classifier is built (layers kept in float, calibration method and
    #: crops, per-channel weights). Unset, the 2.0.0 recipe is rebuilt as it was and the
    #: key is left out of the config's dump, so existing work dirs keep their hash;
    #: ``int8: {}`` selects the measured best (:class:`Int8Options`' defaults).
    int8: Int8Options | None = None
    #: The classifier the bundle serves by default. ``int8`` makes the gated int8 variant
    #: the bundle's classifier and keeps fp32 as a variant (``precision="fp32"``); the
    #: release's end-to-end numbers, wrong-name gate, robustness rows and latency are then
    #: measured on int8, parity stays torch vs fp32, and the release fails when the int8
    #: variant did not pass its own gate (never a silent fp32 bundle). Why: on a 2-core CPU
    #: the 22-pill photo spends ~3/4 of its time in the classifier (docs/performance.md).
    default_precision: Literal["fp32", "int8"] = "fp32"

    _omit_at: ClassVar[dict[str, Any]] = {"int8": None, "default_precision": "fp32"}

    @property
    def int8_options(self) -> Int8Options:
        """The INT8 build settings: ``int8``, or the 2.0.0 recipe when it is unset."""
        if self.int8 is not None:
            return self.int8
        return Int8Options(
            keep_float=[], calibration_crops=self.int8_calibration_crops, reduce_range=False
        )


class GateConfig(ConfigModel):
    #: Classifier parity: top-1 agreement of torch and ONNX on validation crops.
    min_top1_agreement: float = 0.995
    max_pipeline_accuracy_delta: float = 0.005
    min_detector_box_iou: float = 0.99
    #: Detector parity: share of boxes that torch and ONNX both find at IoU >=
    #: ``min_detector_box_iou``. Unset (deprecated), the gate reads ``min_top1_agreement``
    #: as releases before 0.3.1 did; an unset value is left out of the config's dump so the
    #: hash of existing work dirs does not change.
    min_detector_matched_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    max_variant_top1_drop: float = 0.01
    min_val_top1: float = 0.0
    #: Release blocked when more than this share of validation pills is named wrongly
    #: with status ``identified`` by the SDK pipeline (end to end, detector included).
    max_confident_wrong_rate: float = Field(default=1.0, ge=0.0, le=1.0)

    _omit_at: ClassVar[dict[str, Any]] = {"min_detector_matched_fraction": None}

    @property
    def detector_matched_fraction(self) -> float:
        """The detector parity threshold (``min_top1_agreement`` when unset, deprecated)."""
        if self.min_detector_matched_fraction is not None:
            return self.min_detector_matched_fraction
        return self.min_top1_agreement


class ReleaseConfig(ConfigModel):
    #: Train the classifier and the detector side by side, each in its own process with
    #: its own ``threads`` (on a 2-core box two 1-thread jobs finish sooner than one after
    #: the other at 2 threads: both trainers have single-threaded stretches).
    parallel_training: bool = False
    name: str
    version: str
    work_dir: str
    seed: int = 0
    data: DataConfig
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    gates: GateConfig = Field(default_factory=GateConfig)
    output_dir: str = "models"
    description: str = ""
    limitations: list[str] = Field(default_factory=list)

    def resolve(self, base: Path) -> ReleaseConfig:
        """Relative paths in the file are relative to the config file's folder."""

        def fix(p: str) -> str:
            return str((base / p).resolve()) if not Path(p).is_absolute() else p

        data = self.data.model_copy(
            update={
                "sources": [s.model_copy(update={"path": fix(s.path)}) for s in self.data.sources],
                "detector_sources": [
                    s.model_copy(update={"path": fix(s.path)}) for s in self.data.detector_sources
                ],
            }
        )
        return self.model_copy(
            update={
                "work_dir": fix(self.work_dir),
                "output_dir": fix(self.output_dir),
                "data": data,
            }
        )


def load_config(path: str | Path) -> ReleaseConfig:
    p = Path(path)
    raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    return ReleaseConfig.model_validate(raw).resolve(p.resolve().parent)
