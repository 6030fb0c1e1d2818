"""The tables of synthetic scenes: procedural kinds and real photos with their pills removed.

Procedural (:data:`PROCEDURAL_BACKGROUNDS`): plain light and dark tables, gradients,
ruled paper, wood, cloth and speckled stone, each drawn from the scene's generator.
Real (:func:`extract_backgrounds`): the training photos' palms, laptop lids and
countertops, pills covered by nearby texture, cropped by :func:`real_background_crop`
away from the painted areas.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

from .cutouts import SourceItem, int_box, load_rgb, source_hash, split_item

__all__ = [
    "PROCEDURAL_BACKGROUNDS",
    "extract_backgrounds",
    "real_background_crop",
    "rotated_coords",
]

U8: TypeAlias = NDArray[np.uint8]
F32: TypeAlias = NDArray[np.float32]
#: Bump when background extraction changes, so cached backgrounds are not reused.
_BG_VERSION: Final = 3


def _fill_boxes(bgr: U8, mask: U8, rects: Sequence[tuple[int, int, int, int]]) -> U8:
    """Cover each pill rectangle with a nearby clean patch of the same photo, feathered in.

    Copying real texture (granite, skin, fabric) reads as background; diffusion inpainting
    leaves a flat smear that reads as an object. Candidate sources are the rectangle's
    neighbours left/right/above/below at growing distances, the first that is fully inside
    the image and touches no pill wins; Telea inpainting covers any rectangle without one.
    """
    out = bgr.astype(np.float32)
    h, w = mask.shape
    leftover = np.zeros_like(mask)
    for x1, y1, x2, y2 in rects:
        rw, rh = x2 - x1, y2 - y1
        feather = max(1.0, 0.08 * min(rw, rh))
        pad = int(2 * feather) + 1
        src: tuple[int, int] | None = None
        for dist in (1.0, 1.5, 2.0, 3.0):
            for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)):
                sx = x1 + int(dx * dist * (rw + pad))
                sy = y1 + int(dy * dist * (rh + pad))
                if sx - pad < 0 or sy - pad < 0 or sx + rw + pad > w or sy + rh + pad > h:
                    continue
                if mask[sy - pad : sy + rh + pad, sx - pad : sx + rw + pad].any():
                    continue
                src = (sx, sy)
                break
            if src is not None:
                break
        if src is None:
            leftover[y1:y2, x1:x2] = 255
            continue
        sx, sy = src
        # Feathered rectangle: 1 inside the box, fading out over `pad` px around it.
        ax1, ay1 = max(0, x1 - pad), max(0, y1 - pad)
        ax2, ay2 = min(w, x2 + pad), min(h, y2 + pad)
        weight = np.zeros((ay2 - ay1, ax2 - ax1), np.float32)
        weight[y1 - ay1 : y2 - ay1, x1 - ax1 : x2 - ax1] = 1.0
        weight = np.asarray(cv2.GaussianBlur(weight, (0, 0), feather), np.float32)
        weight[y1 - ay1 : y2 - ay1, x1 - ax1 : x2 - ax1] = 1.0
        patch = out[ay1 - y1 + sy : ay2 - y1 + sy, ax1 - x1 + sx : ax2 - x1 + sx]
        region = out[ay1:ay2, ax1:ax2]
        out[ay1:ay2, ax1:ax2] = region * (1 - weight[..., None]) + patch * weight[..., None]
    result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if leftover.any():
        result = np.asarray(cv2.inpaint(result, leftover, 5, cv2.INPAINT_TELEA), np.uint8)
    return np.asarray(result, np.uint8)


def extract_backgrounds(
    items: Sequence[SourceItem],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    max_boxes: int = 3,
    grow: float = 0.25,
) -> list[U8]:
    """Real photo backgrounds, as RGBA: pills covered by nearby texture, alpha 0 there.

    Why: palms, laptop lids and countertops from the real photos are backgrounds the
    procedural generator cannot imitate, and they carry the camera's own look. Scenes crop
    them *avoiding* the alpha-0 (painted) areas where they can (inpainting leaves smears), so
    the inpainting only fills what a crop cannot avoid. Photos with more than ``max_boxes``
    pills are skipped. Each box is grown by ``grow`` of its size to cover shadows and label
    slack. Cached as PNG like :func:`extract_cutouts`.
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    out: list[U8] = []
    for item in items:
        image, boxes, _ = split_item(item)
        if len(boxes) > max_boxes:
            continue
        path: Path | None = None
        if cache is not None:
            key = hashlib.sha1(
                f"bg{_BG_VERSION}|{source_hash(image)}|{[list(map(float, b)) for b in boxes]}"
                f"|{grow}".encode()
            ).hexdigest()[:24]
            path = cache / f"{key}_bg.png"
            if path.is_file():
                bgra = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
                if bgra is not None and bgra.ndim == 3 and bgra.shape[2] == 4:
                    out.append(np.asarray(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), np.uint8))
                    continue
        rgb = load_rgb(image)
        h, w = rgb.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        rects: list[tuple[int, int, int, int]] = []
        for b in boxes:
            if len(b) != 4:
                raise ValueError(f"boxes must be xyxy, got {b!r}")
            gx = grow * (float(b[2]) - float(b[0]))
            gy = grow * (float(b[3]) - float(b[1]))
            ib = int_box((b[0] - gx, b[1] - gy, b[2] + gx, b[3] + gy), w, h)
            if ib is not None:
                mask[ib[1] : ib[3], ib[0] : ib[2]] = 255
                rects.append(ib)
        if mask.mean() > 0.5 * 255:
            continue  # mostly pill: nothing left to use as a background
        bgr = _fill_boxes(np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.uint8), mask, rects)
        bgra = np.dstack([bgr, 255 - mask]).astype(np.uint8)
        if path is not None:
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.png")
            cv2.imwrite(os.fspath(tmp), bgra)
            os.replace(tmp, path)
        out.append(np.asarray(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), np.uint8))
    return out


def _noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> F32:
    """Smooth value noise in about [-1, 1]: low-res gaussian noise upsampled, summed octaves."""
    acc = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, math.ceil(h / cell) + 1), max(2, math.ceil(w / cell) + 1)
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        acc += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cell = max(1.0, cell / 2)
    result: F32 = (acc / total).astype(np.float32)
    return result


def _tint(rng: np.random.Generator, base: float, spread: float) -> F32:
    return np.clip(base + rng.uniform(-spread, spread, 3), 0.0, 1.0).astype(np.float32)


def _hsv_colour(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> F32:
    hsv = np.array(
        [[[rng.uniform(*h) % 180.0, rng.uniform(*s) * 255.0, rng.uniform(*v) * 255.0]]],
        np.float32,
    ).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0
    return np.asarray(rgb, np.float32)


def rotated_coords(rng: np.random.Generator, h: int, w: int) -> tuple[F32, F32]:
    """Pixel grid rotated by a random angle: patterns (grain, lines, weave) at any angle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, math.pi)
    c, s = math.cos(a), math.sin(a)
    u = (xx * c + yy * s).astype(np.float32)
    v = (-xx * s + yy * c).astype(np.float32)
    return u, v


def _bg_plain(rng: np.random.Generator, h: int, w: int, dark: bool) -> F32:
    base = _tint(rng, rng.uniform(0.05, 0.35) if dark else rng.uniform(0.72, 0.97), 0.04)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    img = img + rng.uniform(0.005, 0.03) * _noise(rng, h, w, rng.uniform(20, 120))[..., None]
    return img + rng.uniform(0.0, 0.02) * rng.standard_normal((h, w, 1), dtype=np.float32)


def _bg_gradient(rng: np.random.Generator, h: int, w: int) -> F32:
    c1 = _hsv_colour(rng, (0, 180), (0.0, 0.35), (0.3, 1.0))
    c2 = _hsv_colour(rng, (0, 180), (0.0, 0.35), (0.3, 1.0))
    u, _ = rotated_coords(rng, h, w)
    t = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    return np.asarray(img + 0.01 * _noise(rng, h, w, 40)[..., None], np.float32)


def _bg_paper(rng: np.random.Generator, h: int, w: int) -> F32:
    base = _tint(rng, rng.uniform(0.82, 0.98), 0.03)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    img += 0.015 * _noise(rng, h, w, 4, octaves=2)[..., None]
    if rng.random() < 0.6:  # ruled notebook paper, as in several real photos
        _, v = rotated_coords(rng, h, w)
        spacing = rng.uniform(18, 40) * min(h, w) / 480
        phase = np.mod(v, spacing)
        line = (phase < rng.uniform(1.0, 2.0)).astype(np.float32)
        line = np.asarray(cv2.GaussianBlur(line, (0, 0), 0.6), np.float32)
        colour = _hsv_colour(rng, (95, 125), (0.2, 0.6), (0.5, 0.9))
        img = img * (1 - 0.6 * line[..., None]) + colour * 0.6 * line[..., None]
    return img


def _bg_wood(rng: np.random.Generator, h: int, w: int) -> F32:
    dark = _hsv_colour(rng, (5, 20), (0.4, 0.8), (0.2, 0.5))
    light = _hsv_colour(rng, (8, 25), (0.3, 0.6), (0.5, 0.9))
    _, v = rotated_coords(rng, h, w)
    warp = 8.0 * _noise(rng, h, w, rng.uniform(30, 80))
    freq = rng.uniform(0.05, 0.2) * 480 / min(h, w)
    grain = 0.5 + 0.5 * np.sin((v + warp * 3) * freq)
    grain = grain ** rng.uniform(1, 3)
    fine = 0.5 + 0.5 * _noise(rng, h, w, 2, octaves=1)
    t = np.clip(0.8 * grain + 0.2 * fine, 0, 1)[..., None]
    return np.asarray(dark * t + light * (1 - t), np.float32)


def _bg_cloth(rng: np.random.Generator, h: int, w: int) -> F32:
    colour = _hsv_colour(rng, (0, 180), (0.1, 0.55), (0.25, 0.95))
    u, v = rotated_coords(rng, h, w)
    period = rng.uniform(2.5, 6.0)
    weave = np.sin(u * 2 * math.pi / period) * np.sin(v * 2 * math.pi / period)
    img = colour * (1 + 0.08 * weave[..., None])
    if rng.random() < 0.3:  # plaid stripes
        c2 = _hsv_colour(rng, (0, 180), (0.1, 0.7), (0.2, 0.9))
        sp = rng.uniform(30, 90)
        stripes = ((np.mod(u, sp) < sp * 0.25) | (np.mod(v, sp) < sp * 0.25)).astype(np.float32)
        img = img * (1 - 0.5 * stripes[..., None]) + c2 * 0.5 * stripes[..., None]
    return np.asarray(img + 0.03 * _noise(rng, h, w, 60)[..., None], np.float32)


def _bg_stone(rng: np.random.Generator, h: int, w: int) -> F32:
    base = _tint(rng, rng.uniform(0.4, 0.85), 0.05)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    img += rng.uniform(0.03, 0.08) * _noise(rng, h, w, rng.uniform(40, 150))[..., None]
    speck = rng.standard_normal((h, w), dtype=np.float32)
    speck = np.asarray(cv2.GaussianBlur(speck, (0, 0), rng.uniform(0.5, 1.2)), np.float32)
    img += rng.uniform(0.03, 0.1) * speck[..., None]
    return img


PROCEDURAL_BACKGROUNDS: Final[dict[str, Callable[[np.random.Generator, int, int], F32]]] = {
    "plain_light": lambda r, h, w: _bg_plain(r, h, w, False),
    "plain_dark": lambda r, h, w: _bg_plain(r, h, w, True),
    "gradient": _bg_gradient,
    "paper": _bg_paper,
    "wood": _bg_wood,
    "cloth": _bg_cloth,
    "stone": _bg_stone,
}


def real_background_crop(rng: np.random.Generator, photo: U8, h: int, w: int) -> F32:
    """Random crop of a real background (RGB, or RGBA from :func:`extract_backgrounds`).

    Crops stay inside the inner 90% (Roboflow's rotated copies have black corners) and
    keep at least 40% of the short side, so texture scale stays plausible. With an alpha
    channel, up to 12 crops are tried and the one with the least painted-out (alpha 0) area
    wins, so inpainting smears rarely show.
    """
    ph, pw = photo.shape[:2]
    painted = photo[..., 3] < 128 if photo.shape[2] == 4 else None
    mx, my = int(0.05 * pw), int(0.05 * ph)
    avail_w, avail_h = pw - 2 * mx, ph - 2 * my
    aspect = w / h
    best: tuple[float, int, int, int, int] | None = None
    for _ in range(12 if painted is not None else 1):
        frac = rng.uniform(0.4, 1.0)
        cw = int(min(avail_w, avail_h * aspect) * frac)
        ch = int(cw / aspect)
        cw, ch = max(2, min(cw, avail_w)), max(2, min(ch, avail_h))
        x0 = mx + int(rng.integers(0, max(1, avail_w - cw + 1)))
        y0 = my + int(rng.integers(0, max(1, avail_h - ch + 1)))
        bad = 0.0 if painted is None else float(painted[y0 : y0 + ch, x0 : x0 + cw].mean())
        if best is None or bad < best[0]:
            best = (bad, x0, y0, cw, ch)
        if bad == 0.0:
            break
    assert best is not None
    _, x0, y0, cw, ch = best
    crop = photo[y0 : y0 + ch, x0 : x0 + cw, :3]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    resized = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)
    return resized.astype(np.float32) / 255.0
