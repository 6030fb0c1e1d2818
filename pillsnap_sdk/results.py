"""Typed results returned by :meth:`Identifier.identify` (pydantic, JSON-serialisable)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = ["BBox", "BundleRef", "Candidate", "IdentifyResult", "PillResult"]


class _Result(BaseModel):
    # "ignore": JSON written by model_dump_json (which includes the computed `label`)
    # must load back with model_validate_json.
    model_config = ConfigDict(frozen=True, extra="ignore")


class BBox(_Result):
    """Axis-aligned box in pixels of the (EXIF-corrected) input image."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


class Candidate(_Result):
    """One possible identity of a pill."""

    class_index: int
    code: str = Field(description="K-code or the dataset's label")
    name: str
    confidence: float = Field(ge=0.0, le=1.0, description="calibrated probability")
    metadata: dict[str, str] = Field(default_factory=dict)


class PillResult(_Result):
    """One pill: where it is (None when the whole photo was classified) and what it is."""

    bbox: BBox | None
    detection_confidence: float | None
    status: Literal["identified", "unknown"]
    candidates: list[Candidate] = Field(description="top_k, best first")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> Candidate | None:
        """The best candidate, or None when the pill is unknown."""
        return self.candidates[0] if self.status == "identified" and self.candidates else None


class BundleRef(_Result):
    name: str
    version: str


class IdentifyResult(_Result):
    """Everything :meth:`Identifier.identify` found in one photo."""

    mode_used: Literal["single", "combo"]
    pills: list[PillResult]
    image_size: tuple[int, int] = Field(description="(width, height) after EXIF orientation")
    bundle: BundleRef
    timings_ms: dict[str, float]
    warnings: list[str] = Field(default_factory=list)

    def to_supervision(self) -> Any:
        """This result as ``supervision.Detections`` (needs ``pip install supervision``).

        See :func:`pillsnap_sdk.interop.to_supervision` for what goes where; raises
        :class:`pillsnap_sdk.MissingDependencyError` when supervision is not installed.
        """
        from .interop import to_supervision

        return to_supervision(self)
