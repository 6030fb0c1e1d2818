"""Classifier augmentation covers the camera shifts the robustness check measures."""

from __future__ import annotations

import numpy as np

from pillsnap_train.classifier.augment import augment_crop


def _grey_photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(rng.normal(128, 20, (80, 100, 3)), 0, 255).astype(np.uint8)


def test_white_balance_swings_both_ways_past_the_measured_casts() -> None:
    img = _grey_photo()
    ratios = []
    for i in range(200):
        out = augment_crop(img, None, 0.0, np.random.default_rng(i))
        ratios.append(out[..., 0].mean() / max(out[..., 2].mean(), 1.0))
    r = np.log(np.array(ratios))
    # The robustness check's warm/cool casts change log(R/B) by ~0.5; a +-8 % jitter (1.0.0)
    # never exceeded 0.16. Expected now: ~10 % of samples beyond 0.25 on each side.
    assert (r > 0.25).mean() > 0.04 and (r < -0.25).mean() > 0.04
    assert r.max() > 0.35 and r.min() < -0.35


def test_augment_is_deterministic_and_keeps_uint8_rgb() -> None:
    img = _grey_photo()
    box = (20.0, 15.0, 70.0, 60.0)
    a = augment_crop(img, box, 0.15, np.random.default_rng(7))
    b = augment_crop(img, box, 0.15, np.random.default_rng(7))
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3


def test_strength_zero_is_identity_on_the_whole_photo() -> None:
    img = _grey_photo()
    out = augment_crop(img, None, 0.0, np.random.default_rng(1), strength=0.0)
    flipped = img[:, ::-1]
    assert np.array_equal(out, img) or np.array_equal(out, flipped)
