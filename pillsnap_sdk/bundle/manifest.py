"""The bundle manifest: the contract between the training tools (writer) and the SDK (reader).

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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

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


#: Most detections kept per photo. Ultralytics' own default is 300; a bundle asking for
#: more (one asked for 10,000: 4,054 "pills", 24 s and +1.9 GB for one photo) is refused.
MAX_DETECTIONS = 300
_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_SHA256 = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    # The loader validates with strict=True (no "99" -> 99, no true -> 1); NaN and
    # infinities are refused everywhere (a NaN mean made every photo "no pill").
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(_Strict):
    """One ONNX model in the bundle and how to feed it."""

    file: str = Field(pattern=_FILE_NAME)
    sha256: str = Field(pattern=_SHA256)
    precision: Precision = "fp32"
    input_name: str = Field(min_length=1, max_length=256)
    input_shape: list[int | str] = Field(
        min_length=4, max_length=4, description="NCHW; a string marks a dynamic axis"
    )
    preprocessing: PreprocessSpec
    output_format: Literal["logits", "yolo_cxcywh"] = Field(
        description="logits: [N, classes]; yolo_cxcywh: [1, 4+classes, anchors] (Ultralytics)"
    )

    @field_validator("input_shape")
    @classmethod
    def _dims(cls, v: list[int | str]) -> list[int | str]:
        for d in v:
            if isinstance(d, int) and not 1 <= d <= 8192:
                raise ValueError("fixed dimensions must be 1..8192")
            if isinstance(d, str) and not 1 <= len(d) <= 64:
                raise ValueError("dynamic dimension names must be 1..64 characters")
        return v


class VariantSpec(_Strict):
    """A precision variant that passed its release gates (e.g. an INT8 classifier)."""

    role: Literal["classifier", "detector"]
    file: str = Field(pattern=_FILE_NAME)
    sha256: str = Field(pattern=_SHA256)
    precision: Precision
    metrics: dict[str, float] = Field(default_factory=dict)


class Thresholds(_Strict):
    """Decision thresholds calibrated on validation data when the bundle was released."""

    # Calibrated temperatures are ~0.2-5; 1e-45 gave NaN confidences, inf made every pill
    # "unknown". Confidence below 0.01 or IoU above 0.95 keeps every anchor as a "pill".
    temperature: float = Field(default=1.0, ge=0.01, le=100.0)
    unknown_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Second abstention signal: the top-1 minus top-2 calibrated probability must reach
    #: this too (0 = off, the 0.2 behaviour). A pill the model splits between two look-alike
    #: drugs is "unknown" even when one of them clears ``unknown_threshold``.
    unknown_margin: float = Field(default=0.0, ge=0.0, le=1.0)
    detector_confidence: float = Field(default=0.25, ge=0.01, le=1.0)
    #: Second detector tier (bundles >= 2.2.0, SDK >= 0.5.0; None = off): boxes scored in
    #: [this, ``detector_confidence``) are reported only when the classifier names them
    #: and they do not lie on a confident box's pill. A missed pill can never be named,
    #: and a pill-free crop is refused by the abstention rule, so the tier adds pills the
    #: detector was unsure of without adding "unknown" boxes on the table.
    detector_confidence_named: float | None = Field(default=None, ge=0.01, le=1.0)
    nms_iou: float = Field(default=0.5, ge=0.01, le=0.95)
    max_detections: int = Field(default=100, ge=1, le=MAX_DETECTIONS)
    crop_margin: float = Field(default=0.1, ge=0.0, le=2.0)

    @model_validator(mode="after")
    def _tiers_ordered(self) -> Thresholds:
        low = self.detector_confidence_named
        if low is not None and low > self.detector_confidence:
            raise ValueError(
                f"detector_confidence_named ({low}) must be <= detector_confidence "
                f"({self.detector_confidence})"
            )
        return self

    @model_serializer(mode="wrap")
    def _drop_unset_tier(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Without a second tier the manifest reads as before 0.5.0 (older SDKs load it)."""
        data = handler(self)
        if isinstance(data, dict) and data.get("detector_confidence_named") is None:
            data.pop("detector_confidence_named", None)
        return data

    @property
    def detector_floor(self) -> float:
        """The lowest detector score the pipeline looks at (either tier)."""
        low = self.detector_confidence_named
        return self.detector_confidence if low is None else low


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

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION)
    # Lengths bounded: name and version are copied into every result a bundle gives.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)
    version: str = Field(max_length=64)
    min_sdk_version: str = Field(default="0.1.0", max_length=64)
    created_at: datetime
    classifier: ModelSpec
    detector: ModelSpec | None = None
    variants: list[VariantSpec] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    data: list[DataCredit] = Field(default_factory=list)
    files: dict[str, str] = Field(max_length=64, description="every other bundle file -> sha256")
    manifest_sha256: str = Field(default="", description="sha256 of canonical JSON, this blank")

    @field_validator("version", "min_sdk_version")
    @classmethod
    def _semver(cls, v: str) -> str:
        parse_semver(v)
        return v

    @field_validator("classifier")
    @classmethod
    def _classifier_logits(cls, v: ModelSpec) -> ModelSpec:
        if v.output_format != "logits":
            raise ValueError("the classifier's output_format must be 'logits'")
        return v

    @field_validator("detector")
    @classmethod
    def _detector_yolo(cls, v: ModelSpec | None) -> ModelSpec | None:
        if v is not None and v.output_format != "yolo_cxcywh":
            raise ValueError("the detector's output_format must be 'yolo_cxcywh'")
        return v


class LabelEntry(_Strict):
    index: int = Field(ge=0)
    code: str = Field(max_length=200)
    name: str = Field(max_length=200)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)


class LabelsFile(_Strict):
    """``labels.json``: class index -> code (K-code or dataset label), name and metadata."""

    classes: list[LabelEntry] = Field(min_length=1, max_length=100_000)

    @field_validator("classes")
    @classmethod
    def _dense(cls, v: list[LabelEntry]) -> list[LabelEntry]:
        if [c.index for c in v] != list(range(len(v))):
            raise ValueError("classes must be listed by index 0..N-1 without gaps")
        seen: set[str] = set()
        for c in v:  # two classes under one code: an answer could not say which was meant
            if c.code in seen:
                raise ValueError(f"class code {c.code!r:.80} is listed twice")
            seen.add(c.code)
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
