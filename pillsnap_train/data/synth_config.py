"""The knobs of the synthetic scenes (:class:`SynthConfig`) and the dense-pile preset.

Kept apart from the code that draws scenes because two jobs read it: scene composition
(:mod:`.scenes`, :mod:`.backgrounds`) and the whole-image camera shift
(:mod:`.photometric`), whose ranges are the ``brightness`` ... ``jpeg_quality`` fields.
The fields and their defaults are recorded in ``dataset_info.json`` of every detector
dataset, so renaming one changes what earlier builds mean.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BACKGROUND_KINDS", "SynthConfig", "pile_config"]

#: Procedural background kinds :func:`synthesize_scene` can draw.
BACKGROUND_KINDS: Final = (
    "plain_light",
    "plain_dark",
    "gradient",
    "paper",
    "wood",
    "cloth",
    "stone",
)


class SynthConfig(BaseModel):
    """Knobs for :func:`synthesize_scene`; defaults aim at phone photos of pills on a table.

    Sizes are relative to the canvas so one config works at any resolution. ``pill_size``
    spans the range seen in the real photos: ~0.05 of the short side for a 20-pill table,
    ~0.3 for a close-up of one pill.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(480, ge=16, description="canvas width (px)")
    height: int = Field(640, ge=16, description="canvas height (px)")
    swap_orientation_prob: float = Field(
        0.5, ge=0, le=1, description="chance to swap width/height (portrait vs landscape)"
    )
    n_pills: tuple[int, int] = Field((2, 25), description="inclusive range of pills per scene")
    pill_size: tuple[float, float] = Field(
        (0.04, 0.30), description="pill long side / canvas short side, scene-level range"
    )
    size_jitter: float = Field(0.2, ge=0, le=1, description="per-pill log-size jitter")
    max_fill: float = Field(
        0.35, gt=0, le=1, description="cap on total pill-box area / canvas area (sets max size)"
    )
    min_pill_px: int = Field(6, ge=2, description="smallest pill long side (px)")
    max_upscale: float = Field(
        2.5, ge=1, description="max enlargement of a cut-out (more looks blurry, not like a pill)"
    )
    max_overlap: float = Field(
        0.08, ge=0, le=1, description="max intersection / smaller box area between two pills"
    )
    truncate_prob: float = Field(
        0.05, ge=0, le=1, description="chance a pill may lie partly outside the frame"
    )
    min_visible: float = Field(
        0.55, gt=0, le=1, description="min in-frame fraction of a truncated pill's mask"
    )
    alpha_threshold: int = Field(
        128, ge=1, le=255, description="alpha level that counts as pill for masks and boxes"
    )
    edge_feather: float = Field(0.7, ge=0, description="sigma (px) of the alpha edge blur")
    drop_shadow_prob: float = Field(0.7, ge=0, le=1, description="scene uses drop shadows")
    real_background_prob: float = Field(
        0.3, ge=0, le=1, description="chance of a real photo background (if any are given)"
    )
    background_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "plain_light": 3.0,
            "plain_dark": 1.0,
            "gradient": 1.0,
            "paper": 2.0,
            "wood": 1.0,
            "cloth": 1.0,
            "stone": 2.0,
        },
        description="relative odds of each procedural background kind",
    )
    lighting_prob: float = Field(0.8, ge=0, le=1, description="vignette / light gradient")
    cast_shadow_prob: float = Field(0.25, ge=0, le=1, description="large soft shadow (hand)")
    photometric: bool = Field(True, description="apply the whole-scene photometric aug")
    brightness: float = Field(0.2, ge=0, le=1)
    contrast: float = Field(0.25, ge=0, le=1)
    saturation: float = Field(0.3, ge=0, le=1)
    temperature: float = Field(0.25, ge=0, le=0.5, description="R/B gain shift (white balance)")
    gamma: tuple[float, float] = Field((0.75, 1.35))
    blur_prob: float = Field(0.3, ge=0, le=1)
    blur_sigma: float = Field(1.4, ge=0)
    motion_blur_prob: float = Field(0.15, ge=0, le=1)
    motion_blur_max: int = Field(9, ge=1, description="max motion-blur kernel length (px)")
    noise_prob: float = Field(0.5, ge=0, le=1)
    noise_sigma: float = Field(12.0, ge=0, description="max gaussian noise sigma (0-255 units)")
    jpeg_prob: float = Field(0.7, ge=0, le=1)
    jpeg_quality: tuple[int, int] = Field((20, 95))
    same_pill_prob: float = Field(
        0.0, ge=0, le=1, description="chance a scene uses only 1-2 cut-outs (a pile of one drug)"
    )
    cluster_prob: float = Field(
        0.0, ge=0, le=1, description="chance pills gather round one spot (touching, a pile)"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> SynthConfig:
        lo, hi = self.n_pills
        if not 1 <= lo <= hi:
            raise ValueError(f"n_pills must satisfy 1 <= lo <= hi, got {self.n_pills}")
        if not 0 < self.pill_size[0] <= self.pill_size[1] <= 1:
            raise ValueError(f"pill_size must satisfy 0 < lo <= hi <= 1, got {self.pill_size}")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"bad gamma range {self.gamma}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"bad jpeg_quality range {self.jpeg_quality}")
        unknown = set(self.background_weights) - set(BACKGROUND_KINDS)
        if unknown:
            raise ValueError(f"unknown background kinds {sorted(unknown)}")
        if sum(max(0.0, w) for w in self.background_weights.values()) <= 0:
            raise ValueError("background_weights must have a positive weight")
        return self


def pile_config(base: SynthConfig | None = None) -> SynthConfig:
    """Scenes of dense piles: 25-40 small, touching, overlapping pills, mostly one drug, on
    dark stone, cloth or a plain tray (the counting-tray photos 1.1.0 could not count)."""
    return (base or SynthConfig()).model_copy(
        update={
            "n_pills": (25, 40),
            "pill_size": (0.05, 0.12),
            "max_fill": 0.6,
            "max_overlap": 0.45,
            "truncate_prob": 0.02,
            "same_pill_prob": 0.7,
            "cluster_prob": 0.8,
            "real_background_prob": 0.15,
            "background_weights": {
                "plain_light": 1.0,
                "plain_dark": 2.0,
                "gradient": 0.5,
                "paper": 0.5,
                "wood": 1.0,
                "cloth": 2.0,
                "stone": 3.0,
            },
        }
    )
