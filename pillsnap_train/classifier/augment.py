"""Photometric and geometric augmentation on uint8 RGB, *before* the shared preprocessing.

Augmentation changes what the pill looks like (rotation, light, blur, camera); it must not
change how pixels become tensors, which stays :func:`pillsnap_sdk.preprocessing.preprocess`
so training and serving agree exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from pillsnap_sdk.preprocessing import crop_with_margin
from pillsnap_train.data.photometric import jpeg_roundtrip

__all__ = ["augment_crop", "rescale", "rotated_extent"]

U8 = npt.NDArray[np.uint8]


def augment_crop(
    rgb: U8,
    box: tuple[float, float, float, float] | None,
    margin: float,
    rng: np.random.Generator,
    *,
    strength: float = 1.0,
    scale_prob: float = 0.0,
    scale_range: tuple[float, float] = (0.3, 3.0),
) -> U8:
    """Cut a jittered, rotated crop of ``box`` (or the whole photo) and vary its look.

    ``scale_prob``: chance of :func:`rescale` by a factor in ``scale_range`` (log-uniform)
    at the end, so the model sees each pill at the pixel sizes other distances and cameras
    give.
    """
    if box is None:
        crop = rgb
    else:
        x1, y1, x2, y2 = box
        bw, bh = x2 - x1, y2 - y1
        # Detector boxes are never exact: jitter position and size by up to ~12%.
        j = 0.12 * strength
        dx, dy = rng.uniform(-j, j) * bw, rng.uniform(-j, j) * bh
        sw, sh = 1 + rng.uniform(-j, j), 1 + rng.uniform(-j, j)
        cx, cy = (x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy
        jb = (cx - bw * sw / 2, cy - bh * sh / 2, cx + bw * sw / 2, cy + bh * sh / 2)
        m = margin * (1 + rng.uniform(-0.5, 0.5) * strength)
        crop = _rotated_crop(rgb, jb, m, rng.uniform(0, 360) if strength > 0 else 0.0)
    out = crop.astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    # Lighting and camera: brightness/contrast, white balance, gamma, blur, noise, JPEG.
    out = out * rng.uniform(1 - 0.35 * strength, 1 + 0.35 * strength)
    out = (out - out.mean()) * rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength) + out.mean()
    # White balance: another camera or lamp scales R and B against G. +-8 % (1.0.0) left
    # the bundle 27-29 pt worse under a tungsten/LED cast (`pillsnap-train robustness`).
    wb = np.exp(rng.uniform(-0.25, 0.25, size=3) * strength * (rng.random() < 0.8))
    wb[1] = 1.0
    out *= wb.astype(np.float32)
    out = np.clip(out, 0, 255)
    gamma = rng.uniform(1 - 0.25 * strength, 1 + 0.25 * strength)
    out = 255.0 * (out / 255.0) ** gamma
    res = np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))
    if rng.random() < 0.3 * strength:
        k = int(rng.choice([3, 5]))
        res = np.asarray(cv2.GaussianBlur(res, (k, k), 0), dtype=np.uint8)
    if rng.random() < 0.3 * strength:  # sensor noise of a small or dim-lit camera
        noise = rng.normal(0, rng.uniform(2, 12), res.shape)
        res = np.clip(res + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.3 * strength:  # messaging apps and kiosks recompress hard
        res = jpeg_roundtrip(res, int(rng.integers(20, 91)))
    if scale_prob > 0:
        if rng.random() < scale_prob * strength:  # nearer, farther, another camera
            lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
            res = rescale(res, float(np.exp(rng.uniform(lo, hi))), rng)
    elif rng.random() < 0.3 * strength:  # (1.x recipe) low-resolution camera / distant shot
        h, w = res.shape[:2]
        f = rng.uniform(0.35, 0.8)
        small = cv2.resize(
            res, (max(4, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA
        )
        res = np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)
    return res


def rescale(rgb: U8, factor: float, rng: np.random.Generator) -> U8:
    """Resize by ``factor`` as a camera would: area when shrinking, linear/cubic enlarging.

    A smaller crop is what a farther or lower-resolution camera records; a larger, smooth
    one is what an upscaled or 12 MP photo gives. The shared preprocessing then brings both
    to the network size, so the model learns one name across pixel sizes.
    """
    h, w = rgb.shape[:2]
    nw, nh = max(4, round(w * factor)), max(4, round(h * factor))
    if factor < 1:
        flag = cv2.INTER_AREA
    else:
        flag = cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(rgb, (nw, nh), interpolation=flag), np.uint8)


def _rotated_crop(
    rgb: U8, box: tuple[float, float, float, float], margin: float, angle: float
) -> U8:
    """Rotate a neighbourhood of ``box`` about its centre, then cut box+margin."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    side = max(bw, bh) * (1 + 2 * margin) * 1.5
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    region = crop_with_margin(
        rgb, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), 0.0
    )
    h, w = region.shape[:2]
    ox = max(0.0, cx - side / 2)
    oy = max(0.0, cy - side / 2)
    lcx, lcy = cx - int(ox), cy - int(oy)
    mat = cv2.getRotationMatrix2D((lcx, lcy), angle, 1.0)
    rot = np.asarray(
        cv2.warpAffine(region, mat, (w, h), borderMode=cv2.BORDER_REPLICATE), dtype=np.uint8
    )
    rw, rh = rotated_extent(bw, bh, angle)
    local = (lcx - rw / 2, lcy - rh / 2, lcx + rw / 2, lcy + rh / 2)
    return np.ascontiguousarray(crop_with_margin(rot, local, margin))


def rotated_extent(bw: float, bh: float, angle: float) -> tuple[float, float]:
    """Axis-aligned size of a ``bw x bh`` pill after rotating it by ``angle`` degrees.

    At serving time the detector draws an axis-aligned box around a pill lying at any
    angle, so a rotated training crop must be cut around the rotated pill's box, not the
    upright one (which cut elongated pills to fragments). Pills are mostly round, oval or
    capsule-shaped: the mean of the ellipse's extent (exact for round/oval pills) and the
    rectangle's (never cuts a square tablet's corners) is used.
    """
    t = np.deg2rad(angle)
    c, s = abs(float(np.cos(t))), abs(float(np.sin(t)))
    rect_w, rect_h = bw * c + bh * s, bw * s + bh * c
    ell_w, ell_h = float(np.hypot(bw * c, bh * s)), float(np.hypot(bw * s, bh * c))
    return (rect_w + ell_w) / 2, (rect_h + ell_h) / 2
