"""Classifier inputs built from the validation (or train) photos, for the steps that
measure the exported models: calibration, variants and the parity checks.

Seeds and draw order are part of the released numbers (the thresholds are chosen on these
crops): change them only with a new config version.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.boxes import box_iou
from pillsnap_sdk.image import load_image
from pillsnap_sdk.preprocessing import PreprocessSpec, crop_with_margin, preprocess

from ..config import ReleaseConfig
from ..data.records import group_by_image
from .data import ReleaseData

__all__ = [
    "SHIFT_COPIES",
    "SHIFT_SCALES",
    "background_batch",
    "classifier_spec",
    "crop_batches",
    "detector_spec",
    "near_pill_batch",
    "shifted_crop_batches",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
#: Camera-shifted copies and pixel scales of each validation photo that the abstention
#: thresholds are chosen on, beside the clean crops (``calibration.max_confident_wrong``).
SHIFT_COPIES = 2
SHIFT_SCALES = (0.5, 2.5)


def classifier_spec(cfg: ReleaseConfig) -> PreprocessSpec:
    from ..classifier.train import classifier_spec as spec

    return spec(cfg.classifier)


def detector_spec(cfg: ReleaseConfig) -> PreprocessSpec:
    s = cfg.detector.imgsz
    return PreprocessSpec(resize="letterbox", size=(s, s), interpolation="linear", pad_value=114)


def crop_batches(data: ReleaseData, split: str, *, holdout: bool = False) -> tuple[F32, I64]:
    """Every labelled box of ``split`` as a preprocessed crop, with its class index
    (``holdout``: boxes of unknown classes too, labelled -1)."""
    cfg = data.cfg
    spec, margin = classifier_spec(cfg), cfg.classifier.crop_margin
    index = {c.code: i for i, c in enumerate(data.classes())}
    xs, ys = [], []
    for path, boxes in sorted(group_by_image(data.split(split)).items()):
        rgb = load_image(path)
        for b in boxes:
            if holdout or b.class_code in index:
                xs.append(preprocess(crop_with_margin(rgb, b.box, margin), spec)[0])
                ys.append(index.get(b.class_code, -1))
    if not xs:
        return np.zeros((0, 3, *spec.size), np.float32), np.zeros(0, np.int64)
    return np.stack(xs), np.asarray(ys, np.int64)


def background_batch(data: ReleaseData, n: int = 200) -> F32:
    """Crops of photo regions without pills: should come out "unknown"."""
    spec, rng = classifier_spec(data.cfg), np.random.default_rng(data.cfg.seed)
    xs: list[F32] = []
    items = sorted(group_by_image(data.split("val")).items())
    for _ in range(n * 5):
        if len(xs) >= n or not items:
            break
        path, boxes = items[int(rng.integers(len(items)))]
        rgb = load_image(path)
        h, w = rgb.shape[:2]
        side = float(np.median([max(b.x2 - b.x1, b.y2 - b.y1) for b in boxes]))
        x1, y1 = rng.uniform(0, max(1, w - side)), rng.uniform(0, max(1, h - side))
        cand = np.array([[x1, y1, x1 + side, y1 + side]], np.float32)
        truth = np.array([b.box for b in boxes], np.float32)
        if box_iou(cand, truth).max(initial=0.0) > 0.05:
            continue
        xs.append(preprocess(crop_with_margin(rgb, tuple(cand[0]), 0.0), spec)[0])
    return np.stack(xs) if xs else np.zeros((0, 3, *spec.size), np.float32)


def near_pill_batch(data: ReleaseData, n: int = 200) -> F32:
    """Pill-free crops of ``val`` photos, mostly next to a pill (fingertips, palm creases,
    edges), cut like a detector box (with the classifier's margin): should come out
    "unknown". The same sampler as training's negatives (:mod:`..classifier.negatives`),
    on photos no model trained on."""
    spec, margin = classifier_spec(data.cfg), data.cfg.classifier.crop_margin
    xs: list[F32] = []
    cache: dict[str, npt.NDArray[np.uint8]] = {}
    for s in data.negative_samples("val", n):
        if s.image_path not in cache:  # crops come in seeded-shuffle order, photos repeat
            cache[s.image_path] = load_image(s.image_path)
        xs.append(preprocess(crop_with_margin(cache[s.image_path], s.box, margin), spec)[0])
    return np.stack(xs) if xs else np.zeros((0, 3, *spec.size), np.float32)


def shifted_crop_batches(data: ReleaseData, split: str) -> tuple[F32, I64]:
    """Crops of ``split``'s photos under :data:`SHIFT_COPIES` random camera shifts each
    (white balance, exposure, noise, blur, JPEG: ``photometric.photometric_jitter``) and
    :data:`SHIFT_SCALES` pixel scales (a farther or a 12 MP camera). Seeded."""
    from ..classifier.augment import rescale
    from ..data.photometric import photometric_jitter

    cfg = data.cfg
    spec, margin = classifier_spec(cfg), cfg.classifier.crop_margin
    index = {c.code: i for i, c in enumerate(data.classes())}
    xs, ys = [], []
    for k, (path, boxes) in enumerate(sorted(group_by_image(data.split(split)).items())):
        rgb = load_image(path)
        known = [b for b in boxes if b.class_code in index]
        for j in range(SHIFT_COPIES):
            rng = np.random.default_rng([cfg.seed, 90210, k, j])
            shifted = photometric_jitter(rgb, rng)
            for b in known:
                xs.append(preprocess(crop_with_margin(shifted, b.box, margin), spec)[0])
                ys.append(index[b.class_code])
        for f in SHIFT_SCALES:
            rng = np.random.default_rng([cfg.seed, 4711, k])
            for b in known:
                crop = rescale(crop_with_margin(rgb, b.box, margin), f, rng)
                xs.append(preprocess(crop, spec)[0])
                ys.append(index[b.class_code])
    if not xs:
        return np.zeros((0, 3, *spec.size), np.float32), np.zeros(0, np.int64)
    return np.stack(xs), np.asarray(ys, np.int64)
