"""Precision variants (fp16, int8, ...) listed in the manifest against the fp32 models.

Why: a variant is worth shipping only if it is faster *and* its accuracy cost is known.
Each variant replaces only its own model (the other stays fp32) and is timed in the same
rounds as the fp32 model of its role; the accuracy change comes from the metrics recorded
at release, never from this run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.bench.scenes import Scene, crops_for, scene_bundle
from pillsnap_sdk.bench.timing import Stat, measure_interleaved, paired_ratio
from pillsnap_sdk.bundle.loader import Bundle
from pillsnap_sdk.bundle.manifest import BundleManifest, ModelSpec, VariantSpec
from pillsnap_sdk.errors import BundleError, PillsnapError
from pillsnap_sdk.image import load_image
from pillsnap_sdk.pipeline import Identifier

__all__ = ["VariantResult", "accuracy_delta", "measure_variants", "with_variant"]


@dataclass
class VariantResult:
    """One precision variant of a model, timed on the multi-pill photo."""

    role: str
    precision: str
    file: str
    size_mb: float
    status: Literal["run", "not run"]
    reason: str = ""
    stage: Stat | None = None
    e2e: Stat | None = None
    stage_vs_fp32: float | None = None
    accuracy_delta: float | None = None
    accuracy_note: str = ""


def with_variant(bundle: Bundle, variant: VariantSpec) -> Bundle:
    """The same bundle with ``variant`` as its classifier or detector (in memory only)."""
    base = getattr(bundle.manifest, variant.role)
    if not isinstance(base, ModelSpec):
        raise BundleError(f"variant {variant.file}: the bundle has no {variant.role}")
    spec = base.model_copy(
        update={"file": variant.file, "sha256": variant.sha256, "precision": variant.precision}
    )
    return dataclasses.replace(
        bundle, manifest=bundle.manifest.model_copy(update={variant.role: spec})
    )


def _find_metric(metrics: Mapping[str, Any], key: str) -> float | None:
    if isinstance(metrics.get(key), int | float):
        return float(metrics[key])
    for sub in ("classifier", "val", "test", "eval"):
        nested = metrics.get(sub)
        if isinstance(nested, Mapping) and isinstance(nested.get(key), int | float):
            return float(nested[key])
    return None


def accuracy_delta(manifest: BundleManifest, variant: VariantSpec) -> tuple[float | None, str]:
    """Accuracy change of a variant vs fp32, from the metrics recorded at release."""
    m = variant.metrics
    for key in ("top1_delta", "accuracy_delta", "delta_top1"):
        if key in m:
            return float(m[key]), f"{key} recorded at release"
    if "top1_drop" in m:  # pillsnap_train's release gate: fp32 top-1 minus the variant's
        return -float(m["top1_drop"]), "top1_drop recorded at release"
    for key in ("top1", "accuracy", "top1_accuracy", "val_top1"):
        if key in m:
            base = _find_metric(manifest.metrics, key)
            if base is not None:
                return float(m[key]) - base, f"{key} {base:.4f} -> {m[key]:.4f}"
            return None, f"{key} {m[key]:.4f} (fp32 {key} not recorded)"
    if "top1_agreement_vs_fp32" in m:
        return None, f"top-1 agrees with fp32 on {m['top1_agreement_vs_fp32']:.0%} (no accuracy)"
    return None, "no accuracy recorded"


def _variant_fns(
    idf: Identifier,
    role: str,
    rgb: npt.NDArray[np.uint8],
    crops: list[npt.NDArray[np.uint8]],
    data: bytes,
) -> tuple[Callable[[], object], Callable[[], object]]:
    """(stage call, end-to-end call) bound to one Identifier (closures, not loop lambdas)."""

    def stage() -> object:
        return idf.classify_probabilities(crops) if role == "classifier" else idf.detect(rgb)

    def e2e() -> object:
        return idf.identify(data)

    return stage, e2e


def measure_variants(
    bundle: Bundle, scene: Scene, rounds: int, *, providers: Sequence[str] | None = None
) -> list[VariantResult]:
    """fp32 and every variant in the manifest: stage and end-to-end latency, size, accuracy.

    A variant's stage time is paired with the fp32 model of the same role in the same
    rounds; a variant that cannot load is reported "not run" with the reason.
    """
    base = scene_bundle(bundle, scene)
    m = base.manifest
    rgb = load_image(scene.data)
    base_idf = Identifier(base, providers=providers)
    crops = crops_for(base_idf, rgb, base_idf.identify(scene.data))
    entries: list[tuple[VariantSpec | None, str, str]] = [(None, "classifier", m.classifier.file)]
    if m.detector:
        entries.append((None, "detector", m.detector.file))
    entries += [(v, v.role, v.file) for v in m.variants]
    out: list[VariantResult] = []
    fns: dict[str, Callable[[], object]] = {}
    e2e_key: dict[str, str] = {}
    for variant, role, fname in entries:
        size = len(bundle.model_bytes(fname)) / 1e6
        precision = variant.precision if variant else getattr(m, role).precision
        try:
            idf = (
                Identifier(with_variant(base, variant), providers=providers)
                if variant
                else base_idf
            )
        except PillsnapError as exc:
            out.append(VariantResult(role, precision, fname, size, "not run", str(exc)[:200]))
            continue
        delta, note = accuracy_delta(m, variant) if variant else (0.0, "reference")
        key = f"{role}:{fname}"
        e2e_key[key] = f"{fname}:e2e" if variant else "fp32:e2e"
        fns[key], fns[e2e_key[key]] = _variant_fns(idf, role, rgb, crops, scene.data)
        out.append(
            VariantResult(
                role, precision, fname, size, "run", accuracy_delta=delta, accuracy_note=note
            )
        )
    s = measure_interleaved(fns, rounds, warmup=1)
    refs = {r.role: f"{r.role}:{r.file}" for r in out if r.accuracy_note == "reference"}
    for r in out:
        key = f"{r.role}:{r.file}"
        if key in s:
            r.stage = Stat.of(s[key])
            r.e2e = Stat.of(s[e2e_key[key]])
            ref = refs.get(r.role)
            if ref in s:
                r.stage_vs_fp32 = paired_ratio(s[key], s[ref])
    return out
