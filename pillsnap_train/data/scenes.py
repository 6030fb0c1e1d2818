"""One synthetic scene: pills pasted on a table, with exact boxes.

:func:`synthesize_scene` draws a background (:mod:`.backgrounds`), a pill size, and places
cut-outs (:mod:`.cutouts`) flipped, rotated and feathered where they overlap earlier pills
little (or, for piles, round one spot), with drop shadows, then lights the scene and
applies the camera shift (:mod:`.photometric`). Boxes are the tight boxes of the pasted
alpha masks, so scenes carry no label noise of their own. Every random number comes from
the caller's generator, in a fixed order: a seed fixes a scene bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

from .backgrounds import PROCEDURAL_BACKGROUNDS, real_background_crop, rotated_coords
from .cutouts import Cutout
from .photometric import apply_photometric
from .synth_config import BACKGROUND_KINDS, SynthConfig

__all__ = ["Scene", "synthesize_scene"]

U8: TypeAlias = NDArray[np.uint8]
F32: TypeAlias = NDArray[np.float32]


@dataclass(frozen=True)
class Scene:
    """A synthetic photo and its exact labels.

    ``boxes`` are float32 ``(N, 4)`` xyxy pixel edges (``x2``/``y2`` exclusive): the tight
    box of ``masks[i]``, each mask being the in-frame pixels where the pasted pill's alpha is
    at least ``alpha_threshold`` (before later pills partly cover it: boxes are amodal, as
    human labels are). ``class_ids`` are the cut-outs' source classes (``-1`` = unknown).
    """

    image: U8
    boxes: F32
    class_ids: NDArray[np.int64]
    masks: list[NDArray[np.bool_]]
    background: str


def _transform_cutout(
    rng: np.random.Generator, rgba: U8, long_side: float, feather: float
) -> tuple[F32, F32]:
    """Flip, scale and rotate a cut-out; returns (rgb float [0,1], alpha float [0,1]) patch."""
    img = rgba
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1]
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = np.asarray(
        cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=interp), np.uint8
    )
    if img.ndim == 2:  # 1-px wide resize can drop the channel axis on some builds
        img = img[..., None]
    angle = float(rng.uniform(0, 360))
    a = math.radians(angle)
    cw = math.ceil(abs(nw * math.cos(a)) + abs(nh * math.sin(a))) + 4
    ch = math.ceil(abs(nw * math.sin(a)) + abs(nh * math.cos(a))) + 4
    m = cv2.getRotationMatrix2D(((nw - 1) / 2, (nh - 1) / 2), angle, 1.0)
    m[0, 2] += (cw - 1) / 2 - (nw - 1) / 2
    m[1, 2] += (ch - 1) / 2 - (nh - 1) / 2
    # Premultiply so the bilinear sample at the edge does not drag in the old background.
    f = img.astype(np.float32) / 255.0
    prem = np.dstack([f[..., :3] * f[..., 3:4], f[..., 3]])
    warped = cv2.warpAffine(
        prem,
        m,
        (cw, ch),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    )
    if feather > 0:
        # Blurring colour and alpha together (premultiplied) keeps edge colour the pill's own.
        warped = cv2.GaussianBlur(warped, (0, 0), feather)
    alpha = warped[..., 3]
    rgb = warped[..., :3] / np.maximum(warped[..., 3:4], 1e-4)
    return np.clip(rgb, 0, 1).astype(np.float32), np.clip(alpha, 0, 1).astype(np.float32)


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the *smaller* box's area (``SynthConfig.max_overlap``), not IoU
    (:func:`pillsnap_sdk.boxes.box_iou`): a small pill half under a big one must count
    as covered, which IoU, diluted by the big box's area, would not say."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(smaller, 1e-6)


def _lighting(rng: np.random.Generator, h: int, w: int, cfg: SynthConfig) -> F32:
    """Multiplicative illumination map: vignette, light gradient, soft cast shadow."""
    light = np.ones((h, w), np.float32)
    if rng.random() < cfg.lighting_prob:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / math.hypot(w, h)
        light *= 1 - rng.uniform(0.0, 0.45) * np.clip(r / 0.7, 0, 1) ** 2
        u, _ = rotated_coords(rng, h, w)
        t = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
        light *= 1 + rng.uniform(-0.2, 0.2) * (t - 0.5)
    if rng.random() < cfg.cast_shadow_prob:
        n = int(rng.integers(3, 7))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rad = rng.uniform(0.2, 0.6) * max(h, w)
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        pts = np.stack(
            [
                cx + rad * np.cos(ang) * rng.uniform(0.5, 1.0, n),
                cy + rad * np.sin(ang) * rng.uniform(0.5, 1.0, n),
            ],
            1,
        )
        poly = np.zeros((h, w), np.float32)
        cv2.fillPoly(poly, [pts.astype(np.int32)], 1.0)
        poly = np.asarray(
            cv2.GaussianBlur(poly, (0, 0), rng.uniform(0.03, 0.1) * max(h, w)), np.float32
        )
        light *= 1 - rng.uniform(0.15, 0.45) * poly
    return light


def _place_pill(
    rng: np.random.Generator,
    cfg: SynthConfig,
    canvas: F32,
    cut: Cutout,
    size: float,
    truncate: bool,
    boxes: Sequence[Sequence[float]],
    shadow: tuple[bool, float, float] | None,
    cluster: tuple[float, float, float] | None = None,
) -> tuple[list[float], NDArray[np.bool_]] | None:
    """Paste one pill into ``canvas`` (in place); returns its box and mask, None if it vanished.

    Up to 60 random positions; every 15 misses the pill shrinks by 20%. The last attempt
    ignores overlap and truncation so a busy scene still gets its pill count.
    """
    h, w = canvas.shape[:2]
    min_px = float(min(cfg.min_pill_px, min(h, w)))
    thr = cfg.alpha_threshold / 255.0
    attempts = 60
    patch: tuple[F32, F32, NDArray[np.bool_], int, int, int, int, int] | None = None
    for attempt in range(attempts):
        if attempt and attempt % 15 == 0:
            size = max(min_px, size * 0.8)
            patch = None
        last = attempt == attempts - 1
        if patch is None:  # re-render only when the size changes: positions are cheap
            rgb, alpha = _transform_cutout(rng, cut.rgba, size, cfg.edge_feather)
            solid = alpha >= thr
            n_solid = int(np.count_nonzero(solid))
            if n_solid == 0:
                continue
            ys, xs = np.nonzero(solid)
            patch = (rgb, alpha, solid, n_solid, int(xs.min()), int(ys.min()),
                     int(xs.max()) + 1, int(ys.max()) + 1)  # fmt: skip
        rgb, alpha, solid, n_solid, bx1, by1, bx2, by2 = patch
        bw, bh = bx2 - bx1, by2 - by1
        slack_x = int(bw * (1 - cfg.min_visible)) if truncate and not last else 0
        slack_y = int(bh * (1 - cfg.min_visible)) if truncate and not last else 0
        lo_x, hi_x = -bx1 - slack_x, w - bx2 + slack_x
        lo_y, hi_y = -by1 - slack_y, h - by2 + slack_y
        if hi_x < lo_x or hi_y < lo_y:
            continue  # larger than the canvas: the next shrink helps
        if cluster is None:
            ox = int(rng.integers(lo_x, hi_x + 1))
            oy = int(rng.integers(lo_y, hi_y + 1))
        else:  # near the pile's centre: pills touch and overlap as in a counting tray
            ccx, ccy, spread = cluster
            ox = int(np.clip(rng.normal(ccx, spread) - (bx1 + bx2) / 2, lo_x, hi_x))
            oy = int(np.clip(rng.normal(ccy, spread) - (by1 + by2) / 2, lo_y, hi_y))
        ph, pw = alpha.shape
        cx1, cy1 = max(0, ox), max(0, oy)
        cx2, cy2 = min(w, ox + pw), min(h, oy + ph)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        sub_solid = solid[cy1 - oy : cy2 - oy, cx1 - ox : cx2 - ox]
        vis = int(np.count_nonzero(sub_solid))
        if vis == 0 or vis < cfg.min_visible * n_solid:
            continue
        sy, sx = np.nonzero(sub_solid)
        box = [
            float(cx1 + sx.min()),
            float(cy1 + sy.min()),
            float(cx1 + sx.max() + 1),
            float(cy1 + sy.max() + 1),
        ]
        if not last and any(_overlap(box, b) > cfg.max_overlap for b in boxes):
            continue
        if shadow is not None:
            _, light_dir, strength = shadow
            _drop_shadow(rng, canvas, alpha, ox, oy, size, light_dir, strength)
        a = alpha[cy1 - oy : cy2 - oy, cx1 - ox : cx2 - ox, None]
        pill = np.clip(rgb[cy1 - oy : cy2 - oy, cx1 - ox : cx2 - ox] * rng.uniform(0.9, 1.1), 0, 1)
        canvas[cy1:cy2, cx1:cx2] = canvas[cy1:cy2, cx1:cx2] * (1 - a) + pill * a
        full = np.zeros((h, w), np.bool_)
        full[cy1:cy2, cx1:cx2] = sub_solid
        return box, full
    return None


def _drop_shadow(
    rng: np.random.Generator,
    canvas: F32,
    alpha: F32,
    ox: int,
    oy: int,
    size: float,
    light_dir: float,
    strength: float,
) -> None:
    """Darken the canvas under a blurred copy of the alpha, offset away from the light."""
    h, w = canvas.shape[:2]
    ph, pw = alpha.shape
    off = size * rng.uniform(0.03, 0.1)
    dx, dy = off * math.cos(light_dir), off * math.sin(light_dir)
    blur = max(0.5, size * rng.uniform(0.03, 0.08))
    pad = math.ceil(3 * blur + abs(dx) + abs(dy)) + 1
    sh = cv2.copyMakeBorder(alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    mt = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    sh = cv2.warpAffine(sh, mt, (sh.shape[1], sh.shape[0]))
    sh = cv2.GaussianBlur(sh, (0, 0), blur)
    sx1, sy1 = max(0, ox - pad), max(0, oy - pad)
    sx2, sy2 = min(w, ox + pw + pad), min(h, oy + ph + pad)
    if sx2 > sx1 and sy2 > sy1:
        win = sh[sy1 - oy + pad : sy2 - oy + pad, sx1 - ox + pad : sx2 - ox + pad]
        canvas[sy1:sy2, sx1:sx2] *= 1 - strength * win[..., None]


def synthesize_scene(
    cutouts: Sequence[Cutout],
    rng: np.random.Generator,
    cfg: SynthConfig | None = None,
    *,
    backgrounds: Sequence[U8] | None = None,
) -> Scene:
    """Compose one scene of ``cfg.n_pills`` pills drawn (with replacement) from ``cutouts``.

    Steps: background (procedural, or with ``cfg.real_background_prob`` a crop of one of
    ``backgrounds``); a scene-level pill size, capped so the pills fit (``max_fill``), with
    per-pill jitter; each pill flipped, rotated, feathered and placed where it overlaps no
    earlier pill by more than ``max_overlap`` (shrinking after repeated misses; if all else
    fails it is placed anyway, so the pill count is always in range); drop shadows along one
    light direction; scene lighting; photometric aug. Deterministic for a given ``rng`` state.
    """
    if not cutouts:
        raise ValueError("synthesize_scene needs at least one cut-out")
    cfg = cfg or SynthConfig()
    w, h = cfg.width, cfg.height
    if rng.random() < cfg.swap_orientation_prob:
        w, h = h, w
    short = min(w, h)

    # -- background
    real = list(backgrounds or [])
    if real and rng.random() < cfg.real_background_prob:
        kind = "real"
        canvas = real_background_crop(rng, real[int(rng.integers(len(real)))], h, w)
    else:
        kinds = [k for k in BACKGROUND_KINDS if cfg.background_weights.get(k, 0.0) > 0]
        p = np.array([cfg.background_weights[k] for k in kinds], np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        canvas = PROCEDURAL_BACKGROUNDS[kind](rng, h, w)
    canvas = np.clip(canvas, 0, 1).astype(np.float32)

    # -- sizes
    n = int(rng.integers(cfg.n_pills[0], cfg.n_pills[1] + 1))
    cap = math.sqrt(cfg.max_fill * w * h / (0.7 * n)) / short
    hi = min(cfg.pill_size[1], cap, 0.95)
    lo = min(cfg.pill_size[0], hi)
    scene_size = math.exp(rng.uniform(math.log(lo), math.log(hi))) * short

    shadow = rng.random() < cfg.drop_shadow_prob
    light_dir = rng.uniform(0, 2 * math.pi)
    shadow_strength = rng.uniform(0.2, 0.55)
    pool = list(cutouts)
    if cfg.same_pill_prob > 0 and rng.random() < cfg.same_pill_prob:
        pool = [pool[int(i)] for i in rng.choice(len(pool), min(2, len(pool)), replace=False)]
    cluster: tuple[float, float, float] | None = None
    if cfg.cluster_prob > 0 and rng.random() < cfg.cluster_prob:
        spread = 0.3 * math.sqrt(n) * scene_size
        cluster = (rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, spread)

    boxes: list[list[float]] = []
    masks: list[NDArray[np.bool_]] = []
    class_ids: list[int] = []
    min_px = float(min(cfg.min_pill_px, short))
    draws = 0
    while len(boxes) < n:
        draws += 1
        if draws > 20 * n:  # pragma: no cover - only cut-outs that vanish at every size
            raise RuntimeError("could not place pills: are the cut-outs degenerate?")
        cut = pool[int(rng.integers(len(pool)))]
        native = max(cut.rgba.shape[:2])
        size = scene_size * math.exp(rng.uniform(-cfg.size_jitter, cfg.size_jitter))
        size = max(min(size, native * cfg.max_upscale, 0.95 * short), min_px)
        truncate = bool(rng.random() < cfg.truncate_prob)
        placed = _place_pill(
            rng,
            cfg,
            canvas,
            cut,
            size,
            truncate,
            boxes,
            (shadow, light_dir, shadow_strength) if shadow else None,
            cluster,
        )
        if placed is not None:
            box, mask = placed
            boxes.append(box)
            masks.append(mask)
            class_ids.append(cut.class_id)

    if cluster is not None:  # a pile: overlaps are the point, label what shows
        boxes, masks, class_ids = _visible_only(boxes, masks, class_ids)
    canvas *= _lighting(rng, h, w, cfg)[..., None]
    if cfg.photometric:
        image = apply_photometric(rng, np.clip(canvas, 0, 1), cfg)
    else:
        image = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Scene(
        image=image,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        class_ids=np.asarray(class_ids, np.int64),
        masks=masks,
        background=kind,
    )


def _visible_only(
    boxes: list[list[float]], masks: list[NDArray[np.bool_]], class_ids: list[int]
) -> tuple[list[list[float]], list[NDArray[np.bool_]], list[int]]:
    """Boxes of what stays visible once later pills cover earlier ones (piles only).

    A pill mostly hidden under others is labelled by its visible part, as a person would
    box it; one with under a quarter of it left is dropped (nothing to learn from).
    """
    covered = np.zeros_like(masks[0]) if masks else None
    out_b: list[list[float]] = []
    out_m: list[NDArray[np.bool_]] = []
    out_c: list[int] = []
    for box, mask, cid in reversed(list(zip(boxes, masks, class_ids, strict=True))):
        assert covered is not None
        vis = mask & ~covered
        covered |= mask
        n_all, n_vis = int(np.count_nonzero(mask)), int(np.count_nonzero(vis))
        if n_all == 0 or n_vis < 0.25 * n_all:
            continue
        if n_vis < n_all:
            ys, xs = np.nonzero(vis)
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        out_b.append(box)
        out_m.append(vis)
        out_c.append(cid)
    return out_b[::-1], out_m[::-1], out_c[::-1]
