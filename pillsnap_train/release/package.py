"""Step ``package``: the bundle's specs and report, a checked candidate, then publishing.

Three parts, in order: :func:`build_specs` (manifest specs, thresholds, variants and the
report's measured blocks, from the earlier steps' markers), the candidate bundle and its
checks and gates (:mod:`.checks`), and :func:`publish` (the final bundle, zip and report;
copied to ``output_dir`` only when every gate passed).
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pillsnap_sdk.bundle.manifest import LabelsFile
from pillsnap_sdk.version import __version__

from ..export.names import CLASSIFIER_INPUT, DETECTOR_INPUT
from ..package import labels_file, package_bundle, render_model_card, write_report
from .checks import check_bundle, gates
from .crops import classifier_spec, detector_spec
from .data import ReleaseData
from .results import (
    CalibrateResult,
    ExportResult,
    IngestResult,
    PackageResult,
    TrainClassifierResult,
    TrainDetectorResult,
    VariantsResult,
)
from .workdir import GateFailure

__all__ = ["BundleSpecs", "Inputs", "build_specs", "classifier_files", "package", "publish"]

#: 0.3.0: ``area-linear`` interpolation and ``unknown_margin``.
MIN_SDK_VERSION = "0.3.0"
#: 0.5.0: ``detector_confidence_named`` (a second detector tier).
MIN_SDK_VERSION_TIERS = "0.5.0"


@dataclass(frozen=True)
class Inputs:
    """The earlier steps' results that packaging reads."""

    ingest: IngestResult
    classifier: TrainClassifierResult
    detector: TrainDetectorResult
    export: ExportResult
    calibrate: CalibrateResult
    variants: VariantsResult


@dataclass
class BundleSpecs:
    """What the bundle is built from: files, manifest parts, labels and the report."""

    common: dict[str, Any]  # package_bundle's arguments shared by candidate and final
    manifest_extra: dict[str, Any]
    report: dict[str, Any]
    labels: LabelsFile


def build_specs(data: ReleaseData, inp: Inputs, command: str) -> BundleSpecs:
    """Model specs, thresholds, released variants, provenance and the report's measured
    blocks (checks and gates are added later)."""
    cfg, exp, cal, var = data.cfg, inp.export, inp.calibrate, inp.variants
    labels = labels_file(data.classes())
    det = cal.detector
    thresholds = {
        "temperature": cal.temperature,
        "unknown_threshold": cal.unknown["threshold"],
        "unknown_margin": cal.unknown.get("margin", 0.0),
        "detector_confidence": det["threshold"] if det else 0.25,
        "nms_iou": cfg.calibration.nms_iou,
        "max_detections": cfg.calibration.max_detections,
        "crop_margin": cfg.classifier.crop_margin,
    }
    named = cfg.calibration.detector_confidence_named
    if det and named is not None:
        thresholds["detector_confidence_named"] = min(named, det["threshold"])
    n = cfg.classifier.img_size
    cls_spec = {
        "precision": "fp32",
        "input_name": CLASSIFIER_INPUT,
        "input_shape": ["N", 3, n, n],
        "preprocessing": classifier_spec(cfg).model_dump(),
        "output_format": "logits",
    }
    det_path = Path(exp.detector) if exp.detector is not None else None
    s = cfg.detector.imgsz
    det_spec = (
        {
            "precision": "fp32",
            "input_name": DETECTOR_INPUT,
            "input_shape": [1, 3, s, s],
            "preprocessing": detector_spec(cfg).model_dump(),
            "output_format": "yolo_cxcywh",
        }
        if det_path
        else None
    )
    classifier_onnx, variants, served = classifier_files(
        Path(exp.classifier), var.variants, cfg.export.default_precision
    )
    cls_spec["precision"] = served
    ingest = inp.ingest.model_dump(exclude_unset=True)
    report: dict[str, Any] = {
        "name": cfg.name,
        "version": cfg.version,
        "description": cfg.description,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": __version__,
        "command": command,
        "trained_on": f"CPU ({platform.processor() or platform.machine()}), "
        f"python {sys.version.split()[0]}",
        "credits": [c.model_dump() for c in cfg.data.credits],
        "data": data.summary(ingest),
        "classifier": {
            "val_top1": cal.val_top1,
            "val_top5": cal.val_top5,
            "per_class": cal.per_class,
            "history": inp.classifier.history,
        },
        "detector": det or {},
        "calibration": cal.model_dump(exclude_unset=True),
        "variants": var.variants,
        "default_precision": {"requested": cfg.export.default_precision, "served": served},
        "limitations": cfg.limitations,
        "thresholds": thresholds,
    }
    extra = {
        "min_sdk_version": (
            MIN_SDK_VERSION_TIERS if "detector_confidence_named" in thresholds else MIN_SDK_VERSION
        ),
        "thresholds": thresholds,
        "metrics": {},
        "provenance": {
            "dataset_sha256": inp.ingest.dataset_sha256,
            "training_config": json.loads(cfg.model_dump_json()),
            "code_version": __version__,
            "trained_on": report["trained_on"],
        },
        "data": [c.model_dump() for c in cfg.data.credits],
    }
    common: dict[str, Any] = {
        "name": cfg.name,
        "version": cfg.version,
        "classifier_onnx": classifier_onnx,
        "classifier_spec": cls_spec,
        "detector_onnx": det_path,
        "detector_spec": det_spec,
        "variants": variants,
        "labels": labels,
    }
    return BundleSpecs(common, extra, report, labels)


def classifier_files(
    fp32: Path, reports: list[dict[str, Any]], default: str
) -> tuple[Path, list[tuple[Path, dict[str, Any]]], str]:
    """The bundle's classifier file, its variants (file, spec) and the served precision.

    ``default`` "fp32": the fp32 export, every released variant beside it. Otherwise the
    released ``default`` variant is the classifier and fp32 becomes a variant (metrics
    relative to fp32, like every variant's); when that variant was refused by its gate,
    the fp32 export is served and the release's "default precision" gate fails.
    """
    released = [v for v in reports if v["released"]]

    def spec(v: dict[str, Any]) -> dict[str, Any]:
        keys = ("top1", "top1_drop", "speedup", "latency_ms")
        return {
            "role": "classifier",
            "precision": v["precision"],
            "metrics": {k: float(v[k]) for k in keys},
        }

    chosen = next((v for v in released if v["precision"] == default), None)
    if default == "fp32" or chosen is None:
        return fp32, [(fp32.with_name(v["file"]), spec(v)) for v in released], "fp32"
    reference = {
        "precision": "fp32",
        "top1": chosen["top1"] + chosen["top1_drop"],
        "top1_drop": 0.0,
        "speedup": 1.0,
        "latency_ms": chosen["latency_ms"] * chosen["speedup"],
    }
    others = [(fp32.with_name(v["file"]), spec(v)) for v in released if v is not chosen]
    return fp32.with_name(chosen["file"]), [(fp32, spec(reference)), *others], default


def package(data: ReleaseData, inp: Inputs, command: str) -> PackageResult:
    """Build the specs, package and check a candidate, gate, and publish."""
    specs = build_specs(data, inp, command)
    stage = data.work / "bundle"
    candidate = stage / "candidate"
    shutil.rmtree(stage, ignore_errors=True)
    package_bundle(
        candidate,
        manifest_extra=specs.manifest_extra,
        report=specs.report,
        zip_path=stage / "candidate.zip",
        **specs.common,
    )
    report = specs.report
    report.update(check_bundle(data, candidate, inp.classifier, inp.detector, inp.export))
    report["gates"] = gates(data.cfg.gates, report)
    cal = inp.calibrate
    specs.manifest_extra["metrics"] = {
        "val_top1": cal.val_top1,
        "val_top5": cal.val_top5,
        "detector_ap50": (cal.detector or {}).get("ap50"),
        "end_to_end_accuracy": report["end_to_end"]["end_to_end_accuracy"],
        "unknown_rate": report["end_to_end"]["unknown_rate"],
        "confident_wrong_rate": report["end_to_end"]["confident_wrong_rate"],
    }
    return publish(data, specs, stage)


def publish(data: ReleaseData, specs: BundleSpecs, stage: Path) -> PackageResult:
    """The final bundle, zip and report under ``work_dir/bundle``; copied to
    ``output_dir/<name>`` unless a gate failed (then :class:`GateFailure`, with the model
    card beside the report for reading)."""
    cfg, report = data.cfg, specs.report
    bundle_dir, zip_path = package_bundle(
        stage / cfg.name,
        manifest_extra=specs.manifest_extra,
        report=report,
        zip_path=stage / f"{cfg.name}-{cfg.version}.zip",
        **specs.common,
    )
    write_report(stage / "report.json", report)
    failed = [g for g in report["gates"] if g["status"] == "fail"]
    result = PackageResult(
        bundle=str(bundle_dir),
        zip=str(zip_path),
        report=str(stage / "report.json"),
        gates=report["gates"],
        published=None,
    )
    if failed:
        (stage / "MODEL_CARD.md").write_text(render_model_card(report))
        raise GateFailure("; ".join(f"{g['name']}: {g['detail']}" for g in failed))
    dest = Path(cfg.output_dir) / cfg.name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(bundle_dir, dest)
    result.published = str(dest)
    return result
