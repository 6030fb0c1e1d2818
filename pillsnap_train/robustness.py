"""How a bundle holds up when the photos stop looking like its training photos.

Why: the validation split shares its camera, lighting and tables with the training photos,
so its numbers say little about the set-up a customer has; the detector trained here
scored AP@0.5 0.93 on such a split and 0.29 on another camera on a plain light table.
No photos of other set-ups are available to us, so this module measures the nearest
proxies, on validation photos only (nothing the models trained on):

- *camera shifts*: the same validation photos under one controlled change each (darker,
  brighter, warmer or cooler white balance, defocus blur, sensor noise, heavy JPEG, a
  low-resolution camera). Boxes do not move, so the end-to-end score is directly
  comparable with the unshifted one.
- *plain-table scenes*: validation pills cut out of their photos (GrabCut, as in
  :mod:`pillsnap_train.data.synth`) and laid out afresh on plain light tables, the set-up
  that defeated the first detector. Synthetic, so a proxy, never the evidence of accuracy.

Every shift is deterministic (fixed parameters, seeded noise), so two runs on one bundle
print the same table. Entry point: :func:`evaluate_robustness`; CLI:
``pillsnap-train robustness --config CONFIG [--bundle DIR]``.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from pillsnap_sdk import Identifier, IdentifyResult
from pillsnap_sdk.image import load_image

from .data.photometric import jpeg_roundtrip
from .data.synth import Cutout, SynthConfig, extract_cutouts, pile_config, synthesize_scene
from .evaluate import GroundTruthImage, PipelineScore, score_pipeline

__all__ = [
    "CAMERA_SHIFTS",
    "CameraShift",
    "RobustnessRow",
    "dense_pile_scenes",
    "evaluate_robustness",
    "format_table",
    "plain_table_scenes",
    "upscale",
]

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class CameraShift:
    """One named, deterministic change of a whole photo that keeps every box in place."""

    name: str
    description: str
    apply: Callable[[U8, np.random.Generator], U8]


def _gain(img: U8, gains: tuple[float, float, float]) -> U8:
    out = img.astype(np.float32) * np.asarray(gains, np.float32)
    return np.asarray(np.clip(out + 0.5, 0, 255), np.uint8)


def _gamma(img: U8, gamma: float) -> U8:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.LUT(img, lut), np.uint8)


def _blur(img: U8, rel_sigma: float) -> U8:
    sigma = max(0.5, rel_sigma * min(img.shape[:2]))
    return np.asarray(cv2.GaussianBlur(img, (0, 0), sigma), np.uint8)


def _noise(img: U8, rng: np.random.Generator, sigma: float) -> U8:
    out = img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.asarray(np.clip(out + 0.5, 0, 255), np.uint8)


def _low_res(img: U8, long_side: int) -> U8:
    """Down to a small sensor's resolution and back up, so box coordinates still hold."""
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    if s >= 1:
        return img
    small = cv2.resize(
        img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)


#: The camera/lighting shifts, mild to harsh; each is a single change so a drop is attributable.
CAMERA_SHIFTS: Final[tuple[CameraShift, ...]] = (
    CameraShift(
        "darker",
        "underexposed: gamma 1.8, gain 0.75",
        lambda im, _: _gain(_gamma(im, 1.8), (0.75, 0.75, 0.75)),
    ),
    CameraShift("brighter", "overexposed: gamma 0.55", lambda im, _: _gamma(im, 0.55)),
    CameraShift(
        "warm-wb",
        "tungsten white balance: R x1.25, B x0.75",
        lambda im, _: _gain(im, (1.25, 1.0, 0.75)),
    ),
    CameraShift(
        "cool-wb",
        "daylight/LED white balance: R x0.8, B x1.25",
        lambda im, _: _gain(im, (0.8, 1.0, 1.25)),
    ),
    CameraShift(
        "defocus", "gaussian blur, sigma 0.6 % of the short side", lambda im, _: _blur(im, 0.006)
    ),
    CameraShift("noise", "sensor noise, sigma 12 (0-255)", lambda im, rng: _noise(im, rng, 12.0)),
    CameraShift(
        "jpeg-q20", "heavy JPEG compression, quality 20", lambda im, _: jpeg_roundtrip(im, 20)
    ),
    CameraShift("low-res", "320 px long side, upscaled back", lambda im, _: _low_res(im, 320)),
)


@dataclass(frozen=True)
class RobustnessRow:
    """End-to-end score of one condition (``"none"`` = the validation photos as they are)."""

    condition: str
    description: str
    score: PipelineScore
    n_images: int
    #: Share of pills given the same answer as under ``none`` (same photos only).
    same_answers: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = self.score.as_dict()
        d.pop("per_class_accuracy", None)
        return {
            "condition": self.condition,
            "description": self.description,
            "images": self.n_images,
            "same_answers": self.same_answers,
            **d,
        }


def _val_cutouts(
    images: Sequence[GroundTruthImage], cache_dir: str | Path | None
) -> tuple[list[Cutout], list[str]]:
    """Pill cut-outs of ``images`` (validation photos only) and the codes of their ids."""
    codes: list[str] = []
    items: list[tuple[str, list[list[float]], list[int]]] = []
    for gt in images:
        ids = []
        for code in gt.codes:
            if code not in codes:
                codes.append(code)
            ids.append(codes.index(code))
        items.append((gt.path, gt.boxes.tolist(), ids))
    ctx = (
        tempfile.TemporaryDirectory()
        if cache_dir is None
        else contextlib.nullcontext(str(cache_dir))
    )
    with ctx as cache:
        cutouts: list[Cutout] = extract_cutouts(items, cache)
    if not cutouts:
        raise ValueError("the validation photos gave no usable pill cut-outs")
    return cutouts, codes


def _scenes(
    cut: tuple[list[Cutout], list[str]], n_scenes: int, cfg: SynthConfig, seed: int, key: str
) -> list[tuple[U8, GroundTruthImage]]:
    cutouts, codes = cut
    out = []
    for i in range(n_scenes):
        scene = synthesize_scene(cutouts, np.random.default_rng([seed, i]), cfg)
        gt = GroundTruthImage(
            f"{key}/{i}",
            scene.boxes.astype(np.float32),
            [codes[int(c)] for c in scene.class_ids],
        )
        out.append((scene.image, gt))
    return out


def plain_table_scenes(
    images: Sequence[GroundTruthImage],
    n_scenes: int,
    *,
    seed: int = 1234,
    pills: tuple[int, int] = (2, 20),
    cache_dir: str | Path | None = None,
    cutouts: tuple[list[Cutout], list[str]] | None = None,
) -> list[tuple[U8, GroundTruthImage]]:
    """Lay validation pills out afresh on plain light tables (the set-up that broke detector 0).

    Cut-outs come only from ``images`` (validation photos), keep their class codes, and are
    placed by :func:`~pillsnap_train.data.synth.synthesize_scene` with only the
    ``plain_light`` background, mild lighting and no extra photometric augmentation: the
    point is a new table, not a new camera. Returns ``(rgb, ground truth)`` pairs; a ground
    truth's ``path`` is a ``"plain-table/<i>"`` key, not a file.
    """
    cfg = SynthConfig(
        n_pills=pills,
        background_weights={"plain_light": 1.0},
        real_background_prob=0.0,
        photometric=False,
        truncate_prob=0.0,
        cast_shadow_prob=0.0,
        pill_size=(0.06, 0.25),
    )
    cut = cutouts or _val_cutouts(images, cache_dir)
    return _scenes(cut, n_scenes, cfg, seed, "plain-table")


def dense_pile_scenes(
    images: Sequence[GroundTruthImage],
    n_scenes: int,
    *,
    seed: int = 4321,
    cache_dir: str | Path | None = None,
    cutouts: tuple[list[Cutout], list[str]] | None = None,
) -> list[tuple[U8, GroundTruthImage]]:
    """25-40 touching, overlapping validation pills, mostly of one drug, piled on dark
    stone, cloth or a tray (:func:`~pillsnap_train.data.synth.pile_config`, no photometric
    change): the counting-tray photos where detector 1.1.0 found 2-8 of 28-36 pills."""
    cfg = pile_config().model_copy(
        update={"real_background_prob": 0.0, "photometric": False, "cast_shadow_prob": 0.0}
    )
    cut = cutouts or _val_cutouts(images, cache_dir)
    return _scenes(cut, n_scenes, cfg, seed, "dense-pile")


def upscale(img: U8, gt: GroundTruthImage, megapixels: float = 12.0) -> tuple[U8, GroundTruthImage]:
    """The photo enlarged (bicubic) to ``megapixels``, boxes scaled with it: the same scene
    as a 12 MP phone or kiosk camera frames it, without new detail."""
    h, w = img.shape[:2]
    f = math.sqrt(megapixels * 1e6 / (h * w))
    big = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
    sx, sy = big.shape[1] / w, big.shape[0] / h
    boxes = gt.boxes * np.asarray([sx, sy, sx, sy], np.float32)
    return np.asarray(big, np.uint8), GroundTruthImage(gt.path, boxes, list(gt.codes))


def evaluate_robustness(
    idf: Identifier,
    images: Sequence[GroundTruthImage],
    *,
    shifts: Sequence[CameraShift] = CAMERA_SHIFTS,
    plain_table: int = 30,
    dense_piles: int = 0,
    upscaled: bool = True,
    seed: int = 1234,
    progress: Callable[[str], None] | None = None,
) -> list[RobustnessRow]:
    """Score ``idf`` end to end on ``images`` as they are, under each shift, upscaled to
    12 MP (``upscaled``), and on ``plain_table`` plain-table and ``dense_piles`` dense-pile
    synthetic scenes made from the same images' pills (0 skips each).

    The identical scoring (:func:`~pillsnap_train.evaluate.score_pipeline`: found at IoU >= 0.5
    and named right) is used for every row, so rows compare directly.
    """
    if not images:
        raise ValueError("no validation images to evaluate on")
    photos = {gt.path: load_image(gt.path) for gt in images}
    rows: list[RobustnessRow] = []

    def run(
        name: str,
        description: str,
        fn: Callable[[str], IdentifyResult],
        gts: Sequence[GroundTruthImage],
        same_pills: bool = True,
    ) -> None:
        """Score one row; ``same_pills``: the pills of ``none``, comparable one by one."""
        if progress is not None:
            progress(name)
        score = score_pipeline(fn, gts)
        same = score.same_answers(rows[0].score) if rows and same_pills else None
        rows.append(RobustnessRow(name, description, score, len(gts), same))

    order = {p: i for i, p in enumerate(sorted(photos))}  # per-photo noise seed
    run("none", "validation photos as they are", lambda p: idf.identify(photos[p]), images)
    for k, shift in enumerate(shifts):
        rng_seed = [seed, k]

        def shifted(
            p: str, shift: CameraShift = shift, rng_seed: list[int] = rng_seed
        ) -> IdentifyResult:
            key = [*rng_seed, order[p]]
            return idf.identify(shift.apply(photos[p], np.random.default_rng(key)))

        run(shift.name, shift.description, shifted, images)
    if upscaled:
        big = {gt.path: upscale(photos[gt.path], gt) for gt in images}
        run(
            "upscaled-12mp",
            "the same photos enlarged (bicubic) to 12 MP, boxes scaled",
            lambda p: idf.identify(big[p][0]),
            [big[gt.path][1] for gt in images],
        )
        del big
    cut = _val_cutouts(images, None) if plain_table > 0 or dense_piles > 0 else None
    for kind, n, make, what in (
        ("plain-table", plain_table, plain_table_scenes, "on plain light tables"),
        ("dense-pile", dense_piles, dense_pile_scenes, "piled 25-40, touching, overlapping"),
    ):
        if n <= 0:
            continue
        scenes = make(images, n, seed=seed, cutouts=cut)
        table: dict[str, U8] = {gt.path: img for img, gt in scenes}

        def scene(p: str, table: dict[str, U8] = table) -> IdentifyResult:
            return idf.identify(table[p])

        run(
            kind,
            f"{n} synthetic scenes of validation pills {what}",
            scene,
            [gt for _, gt in scenes],
            same_pills=False,
        )
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :meth:`RobustnessRow.as_dict` rows, with the change against
    ``none``; used by the CLI and the model card alike."""
    base = next((r["end_to_end_accuracy"] for r in rows if r["condition"] == "none"), math.nan)
    lines = [
        "| condition | images | pills | end-to-end | vs none (pt) | recall | unknown "
        "| named wrong | same answers | false pos. | what |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = r["end_to_end_accuracy"]
        delta = "" if r["condition"] == "none" else f"{100 * (acc - base):+.1f}"
        same = r.get("same_answers")
        wrong = r.get("confident_wrong_rate")
        lines.append(
            f"| {r['condition']} | {r['images']} | {r['n_pills']} | {100 * acc:.1f} % | {delta} | "
            f"{100 * r['pill_recall']:.1f} % | {100 * r['unknown_rate']:.1f} % | "
            f"{'' if wrong is None else f'{100 * wrong:.1f} %'} | "
            f"{'' if same is None else f'{100 * same:.1f} %'} | "
            f"{r['false_positives']} | {r['description']} |"
        )
    return "\n".join(lines)
