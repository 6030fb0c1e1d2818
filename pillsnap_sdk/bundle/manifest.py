"""The bundle manifest: the contract between pillsnap_train (writer) and the SDK (reader).

Pydantic models with ``extra="forbid"``: a typo in a key is an error, not a silently
ignored threshold. :func:`manifest_json_schema` exports the JSON schema shipped in
``pillsnap_sdk/schema/manifest.schema.json``.

Integrity: ``files`` maps every bundle file to its sha256, and ``manifest_sha256`` is the
sha256 of this manifest's canonical JSON with that field blanked, so editing a threshold
or a label without re-packaging is detected. (This is integrity, not authenticity: sign
the zip if the distribution channel is untrusted.)
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..preprocessing import PreprocessSpec
from ..version import parse_semver

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "BundleManifest",
    "DataCredit",
    "LabelEntry",
    "LabelsFile",
    "ModelSpec",
    "Provenance",
    "Thresholds",
    "VariantSpec",
    "canonical_manifest_digest",
    "manifest_json_schema",
]

#: Manifest schema this SDK reads; a bundle with a higher one is refused.
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.json"
CARD_NAME = "MODEL_CARD.md"

Precision = Literal["fp32", "fp16", "int8"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """One ONNX model in the bundle and how to feed it."""

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    precision: Precision = "fp32"
    input_name: str
    input_shape: list[int | str] = Field(description="NCHW; a string marks a dynamic axis")
    preprocessing: PreprocessSpec
    output_format: Literal["logits", "yolo_cxcywh"] = Field(
        description="logits: [N, classes]; yolo_cxcywh: [1, 4+classes, anchors] (Ultralytics)"
    )


class VariantSpec(_Strict):
    """A precision variant that passed its release gates (e.g. an INT8 classifier)."""

    role: Literal["classifier", "detector"]
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    precision: Precision
    metrics: dict[str, float] = Field(default_factory=dict)


class Thresholds(_Strict):
    """Decision thresholds calibrated by pillsnap_train on validation data."""

    temperature: float = Field(default=1.0, gt=0.0)
    unknown_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Second abstention signal: the top-1 minus top-2 calibrated probability must reach
    #: this too (0 = off, the 0.2 behaviour). A pill the model splits between two look-alike
    #: drugs is "unknown" even when one of them clears ``unknown_threshold``.
    unknown_margin: float = Field(default=0.0, ge=0.0, le=1.0)
    detector_confidence: float = Field(default=0.25, ge=0.0, le=1.0)
    nms_iou: float = Field(default=0.5, gt=0.0, le=1.0)
    max_detections: int = Field(default=100, ge=1, le=10_000)
    crop_margin: float = Field(default=0.1, ge=0.0, le=2.0)


class Provenance(_Strict):
    dataset_sha256: str = ""
    training_config: dict[str, Any] = Field(default_factory=dict)
    code_version: str = ""
    trained_on: str = Field(default="", description="device the weights were trained on")


class DataCredit(_Strict):
    name: str
    source: str
    licence: str
    attribution: str = ""


class BundleManifest(_Strict):
    """``manifest.json`` of a bundle."""

    schema_version: int = Field(ge=1)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str
    min_sdk_version: str = "0.1.0"
    created_at: datetime
    classifier: ModelSpec
    detector: ModelSpec | None = None
    variants: list[VariantSpec] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    data: list[DataCredit] = Field(default_factory=list)
    files: dict[str, str] = Field(description="every other bundle file -> sha256")
    manifest_sha256: str = Field(default="", description="sha256 of canonical JSON, this blank")

    @field_validator("version", "min_sdk_version")
    @classmethod
    def _semver(cls, v: str) -> str:
        parse_semver(v)
        return v


class LabelEntry(_Strict):
    index: int = Field(ge=0)
    code: str
    name: str
    metadata: dict[str, str] = Field(default_factory=dict)


class LabelsFile(_Strict):
    """``labels.json``: class index -> code (K-code or dataset label), name and metadata."""

    classes: list[LabelEntry]

    @field_validator("classes")
    @classmethod
    def _dense(cls, v: list[LabelEntry]) -> list[LabelEntry]:
        if [c.index for c in v] != list(range(len(v))):
            raise ValueError("classes must be listed by index 0..N-1 without gaps")
        return v


def canonical_manifest_digest(raw: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON with ``manifest_sha256`` blanked."""
    body = dict(raw)
    body["manifest_sha256"] = ""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_json_schema() -> dict[str, Any]:
    """JSON schema of :class:`BundleManifest` (exported for non-Python tooling)."""
    return BundleManifest.model_json_schema()
