"""Whole-photo camera and lighting changes on uint8 RGB that keep every box in place.

White balance, saturation, contrast, brightness, gamma, blur, motion blur, sensor noise
and JPEG artefacts, with the ranges of a :class:`~.synth_config.SynthConfig`. Used as the
last step of every synthetic scene, on its own for camera-shifted copies of real photos
(detector dataset, classifier calibration crops), and (:func:`jpeg_roundtrip`) by the
classifier's augmentation and the robustness rows.

Every random number comes from the caller's generator, in a fixed order: the order is
part of every seeded dataset and of the released thresholds, so draws must not be
reordered, added or dropped without a new config version.
"""

from __future__ import annotations

from typing import TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

from .synth_config import SynthConfig

__all__ = ["apply_photometric", "jpeg_roundtrip", "photometric_jitter"]

U8: TypeAlias = NDArray[np.uint8]
F32: TypeAlias = NDArray[np.float32]


def apply_photometric(rng: np.random.Generator, img: F32, cfg: SynthConfig) -> U8:
    """Camera-like degradations on the whole scene, in float [0, 1] then uint8.

    White balance, saturation, contrast and brightness are all affine in RGB, so they are
    folded into one 3x4 matrix (one ``cv2.transform`` pass); gamma is a uint8 lookup table.
    """
    gains = np.ones(3, np.float64)
    t = rng.uniform(-cfg.temperature, cfg.temperature)
    gains[0] += t
    gains[2] -= t
    sat = 1 + rng.uniform(-cfg.saturation, cfg.saturation)
    sat_m = sat * np.eye(3) + (1 - sat) / 3 * np.ones((3, 3))
    lin = sat_m @ np.diag(gains)
    con = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    mean = float((lin @ img.reshape(-1, 3).mean(axis=0)).mean())
    bias = (1 - con) * mean + rng.uniform(-cfg.brightness, cfg.brightness) * 0.5
    m = np.hstack([con * lin * 255.0, np.full((3, 1), bias * 255.0 + 0.5)]).astype(np.float32)
    x = np.asarray(cv2.transform(img, m), np.float32)
    out = np.clip(x, 0, 255).astype(np.uint8)
    g = rng.uniform(*cfg.gamma)
    lut = np.clip((np.arange(256) / 255.0) ** g * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.asarray(cv2.LUT(out, lut), np.uint8)
    if cfg.blur_sigma > 0 and rng.random() < cfg.blur_prob:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, cfg.blur_sigma)), np.uint8)
    if cfg.motion_blur_max > 1 and rng.random() < cfg.motion_blur_prob:
        k = int(rng.integers(2, cfg.motion_blur_max + 1))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
        kern = np.asarray(cv2.warpAffine(kern, rot, (k, k)), np.float32)
        kern /= max(float(kern.sum()), 1e-6)
        out = np.asarray(cv2.filter2D(out, -1, kern), np.uint8)
    if cfg.noise_sigma > 0 and rng.random() < cfg.noise_prob:
        sigma = rng.uniform(1.0, cfg.noise_sigma)
        noise = rng.standard_normal((*out.shape[:2], 1), dtype=np.float32) * sigma
        noise = noise + rng.standard_normal(out.shape, dtype=np.float32) * (sigma * 0.3)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        out = jpeg_roundtrip(out, q)
    return np.ascontiguousarray(out)


def jpeg_roundtrip(rgb: U8, quality: int) -> U8:
    """``rgb`` encoded as a JPEG of ``quality`` and decoded again (RGB in, RGB out), or
    ``rgb`` itself if OpenCV's codec refuses it: the artefacts of a recompressed photo."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if dec is None:
        return rgb
    return np.ascontiguousarray(cv2.cvtColor(dec, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def photometric_jitter(rgb: U8, rng: np.random.Generator, cfg: SynthConfig | None = None) -> U8:
    """A real photo under another camera and light: the scenes' whole-image photometric aug
    (white balance, saturation, contrast, brightness, gamma, blur, noise, JPEG) on its own.

    Pixels move, geometry does not, so the photo's labels stay valid.
    """
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    img = (arr.astype(np.float32) / 255.0).astype(np.float32)
    return apply_photometric(rng, img, cfg or SynthConfig())
