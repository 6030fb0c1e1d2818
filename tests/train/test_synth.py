"""Multi-pill scene synthesis: determinism, exact boxes, pill counts, degenerate inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pillsnap_train.data.photometric import photometric_jitter
from pillsnap_train.data.synth import (
    Cutout,
    SynthConfig,
    extract_backgrounds,
    extract_cutouts,
    pile_config,
    segment_pill,
    synthesize_scene,
    write_synthetic_yolo,
)


def _photo(seed: int, w: int = 160, h: int = 120) -> tuple[np.ndarray, list[list[float]]]:
    """A grey noisy 'table' with one saturated elliptical pill; returns (rgb, [box])."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(150, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    cx, cy = int(rng.integers(50, w - 50)), int(rng.integers(40, h - 40))
    ax, ay = int(rng.integers(18, 30)), int(rng.integers(10, 18))
    colour = [(200, 30, 30), (30, 160, 40), (40, 60, 200)][seed % 3]
    cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, colour, -1, cv2.LINE_AA)
    return img, [[cx - ax - 1.0, cy - ay - 1.0, cx + ax + 2.0, cy + ay + 2.0]]


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory: pytest.TempPathFactory) -> list[Cutout]:
    items = []
    for s in range(4):
        img, boxes = _photo(s)
        items.append((img, boxes, [s]))
    cuts = extract_cutouts(items, tmp_path_factory.mktemp("cutcache"))
    assert len(cuts) == 4
    return cuts


SMALL = SynthConfig(width=128, height=96, n_pills=(2, 25), pill_size=(0.08, 0.3))


def test_grabcut_segments_a_clear_pill() -> None:
    img, boxes = _photo(7)
    seg = segment_pill(img, boxes[0])
    assert seg is not None
    mask, (x1, y1, x2, y2), method = seg
    assert method == "grabcut"
    # Ground truth: the saturated pixels of the drawn ellipse.
    sat = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1] > 100
    truth = sat[y1:y2, x1:x2]
    got = mask > 0
    iou = (truth & got).sum() / (truth | got).sum()
    assert iou > 0.85, iou


def test_cutouts_are_tight_rgba_and_cached(tmp_path: Path) -> None:
    img, boxes = _photo(1)
    first = extract_cutouts([(img, boxes, [3])], tmp_path)
    assert len(first) == 1 and first[0].class_id == 3
    rgba = first[0].rgba
    assert rgba.ndim == 3 and rgba.shape[2] == 4 and rgba.dtype == np.uint8
    alpha = rgba[..., 3] > 0
    assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
    assert set(np.unique(rgba[..., 3]).tolist()) <= {0, 255}
    cached = list(tmp_path.glob("*.png"))
    assert len(cached) == 1
    # A rerun reads the cache: poison the cached file and check it is what comes back.
    poisoned = rgba.copy()
    poisoned[..., 0] = 7
    cv2.imwrite(str(cached[0]), cv2.cvtColor(poisoned, cv2.COLOR_RGBA2BGRA))
    again = extract_cutouts([(img, boxes, [3])], tmp_path)
    assert (again[0].rgba[..., 0] == 7).all()


def test_degenerate_boxes_do_not_crash(tmp_path: Path) -> None:
    img, _ = _photo(2)
    h, w = img.shape[:2]
    boxes = [
        [10.0, 10.0, 11.0, 11.0],  # 1x1
        [0.0, 0.0, 30.0, 25.0],  # at the border
        [w - 20.0, h - 15.0, w + 40.0, h + 40.0],  # hanging off the image
        [w + 5.0, h + 5.0, w + 50.0, h + 50.0],  # outside entirely
        [20.0, 20.0, 20.0, 60.0],  # zero width
        [0.0, 0.0, float(w), float(h)],  # the whole image: no background for GrabCut
        [float("nan"), 0.0, 10.0, 10.0],
    ]
    cuts = extract_cutouts([(img, boxes)], tmp_path)
    # Usable: border box, hanging box (clipped), whole image.
    assert len(cuts) == 3
    assert all(min(c.rgba.shape[:2]) >= 2 for c in cuts)
    assert all(c.class_id == -1 for c in cuts)
    assert segment_pill(img, [10.0, 10.0, 11.0, 11.0]) is not None  # ellipse, no crash
    assert segment_pill(img, [w + 5.0, 0.0, w + 9.0, 4.0]) is None
    # Scenes from a degenerate (tiny) cut-out still work.
    tiny = Cutout(np.full((2, 3, 4), 255, np.uint8))
    scene = synthesize_scene([tiny], np.random.default_rng(0), SMALL)
    assert 2 <= len(scene.boxes) <= 25


def test_scenes_are_deterministic_by_seed(cutouts: list[Cutout]) -> None:
    a = synthesize_scene(cutouts, np.random.default_rng(123), SMALL)
    b = synthesize_scene(cutouts, np.random.default_rng(123), SMALL)
    c = synthesize_scene(cutouts, np.random.default_rng(124), SMALL)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.boxes, b.boxes)
    assert np.array_equal(a.class_ids, b.class_ids)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(12))
def test_boxes_inside_and_tight_around_alpha(cutouts: list[Cutout], seed: int) -> None:
    cfg = SMALL.model_copy(update={"truncate_prob": 0.5})
    scene = synthesize_scene(cutouts, np.random.default_rng(seed), cfg)
    h, w = scene.image.shape[:2]
    assert scene.image.dtype == np.uint8 and scene.image.shape[2] == 3
    assert {h, w} == {96, 128}
    n = len(scene.boxes)
    assert cfg.n_pills[0] <= n <= cfg.n_pills[1]
    assert len(scene.masks) == n == len(scene.class_ids)
    assert set(scene.class_ids.tolist()) <= {0, 1, 2, 3}
    for box, mask in zip(scene.boxes, scene.masks, strict=True):
        x1, y1, x2, y2 = box.tolist()
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        ys, xs = np.nonzero(mask)
        assert xs.size > 0
        assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_pill_count_range_is_respected(cutouts: list[Cutout]) -> None:
    cfg = SMALL.model_copy(update={"n_pills": (5, 7), "photometric": False})
    counts = {len(synthesize_scene(cutouts, np.random.default_rng(s), cfg).boxes) for s in range(8)}
    assert counts <= {5, 6, 7} and len(counts) > 1


def test_pasted_pills_change_the_pixels_under_their_boxes(cutouts: list[Cutout]) -> None:
    """Boxes must sit where the pills are: a scene without pills differs only inside boxes."""
    cfg = SMALL.model_copy(
        update={
            "n_pills": (3, 3),
            "photometric": False,
            "lighting_prob": 0.0,
            "cast_shadow_prob": 0.0,
            "drop_shadow_prob": 0.0,
            "background_weights": {"plain_light": 1.0},
            "swap_orientation_prob": 0.0,
        }
    )
    scene = synthesize_scene(cutouts, np.random.default_rng(5), cfg)
    inside = np.zeros(scene.image.shape[:2], bool)
    for m in scene.masks:
        inside |= m
    # Pills are saturated, the plain light table is not.
    sat = cv2.cvtColor(scene.image, cv2.COLOR_RGB2HSV)[..., 1]
    assert np.median(sat[inside]) > 100
    grown = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.percentile(sat[~grown], 99) < 60


def test_write_synthetic_yolo(tmp_path: Path, cutouts: list[Cutout]) -> None:
    cfg = SMALL.model_copy(update={"n_pills": (2, 4)})
    out = write_synthetic_yolo(tmp_path / "ds", cutouts, 3, cfg, seed=9, class_mode="source")
    imgs = sorted((out / "images").glob("*.jpg"))
    labels = sorted((out / "labels").glob("*.txt"))
    assert (
        [p.stem for p in imgs] == [p.stem for p in labels] == [f"synth_{i:06d}" for i in range(3)]
    )
    records = [json.loads(x) for x in (out / "synth_scenes.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for lab, rec in zip(labels, records, strict=True):
        rows = [list(map(float, r.split())) for r in lab.read_text().splitlines()]
        assert 2 <= len(rows) <= 4 and len(rows) == len(rec["boxes"])
        assert [int(r[0]) for r in rows] == rec["class_ids"]
        for r, b in zip(rows, rec["boxes"], strict=True):
            assert all(0 < v <= 1 for v in r[1:])
            assert r[1] == pytest.approx((b[0] + b[2]) / 2 / rec["width"], abs=1e-3)
            assert r[4] == pytest.approx((b[3] - b[1]) / rec["height"], abs=1e-3)
    # Same seed, same bytes; scene i does not depend on how many scenes are written.
    again = write_synthetic_yolo(tmp_path / "ds2", cutouts, 2, cfg, seed=9, class_mode="source")
    for i in range(2):
        name = f"images/synth_{i:06d}.jpg"
        assert (again / name).read_bytes() == (out / name).read_bytes()
    unknown = [Cutout(c.rgba) for c in cutouts]
    with pytest.raises(ValueError, match="class ids"):
        write_synthetic_yolo(tmp_path / "ds3", unknown, 1, cfg, class_mode="source")


def test_real_backgrounds_cover_pills_and_mark_them(tmp_path: Path) -> None:
    img, boxes = _photo(0, w=200, h=150)
    (bg,) = extract_backgrounds([(img, boxes)], tmp_path)
    assert bg.shape == (150, 200, 4)
    x1, y1, x2, y2 = (int(v) for v in boxes[0])
    assert (bg[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2, 3] == 0).all()  # painted area flagged
    assert bg[..., 3].mean() > 0.5 * 255
    sat = cv2.cvtColor(np.ascontiguousarray(bg[..., :3]), cv2.COLOR_RGB2HSV)[..., 1]
    assert sat[y1:y2, x1:x2].mean() < 40  # the red pill is gone
    # A scene on it uses it; with many pills in a photo it is skipped.
    cfg = SMALL.model_copy(update={"real_background_prob": 1.0})
    cut = extract_cutouts([(img, boxes)], None)
    assert (
        synthesize_scene(cut, np.random.default_rng(0), cfg, backgrounds=[bg]).background == "real"
    )
    assert extract_backgrounds([(img, boxes * 4)], None) == []


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SynthConfig(n_pills=(3, 2))
    with pytest.raises(ValueError):
        SynthConfig(background_weights={"marble": 1.0})
    with pytest.raises(ValueError):
        synthesize_scene([], np.random.default_rng(0))


def test_photometric_jitter_shifts_colour_but_not_geometry() -> None:
    img, _ = _photo(0)
    outs = [photometric_jitter(img, np.random.default_rng([5, i])) for i in range(40)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(outs[0], photometric_jitter(img, np.random.default_rng([5, 0])))
    # White balance: the table's R/B ratio must swing well past a mild +-8 % cast, both ways
    # (the robustness check's warm/cool shifts are +-25 %).
    ratio = np.array([o[..., 0].mean() / max(o[..., 2].mean(), 1.0) for o in outs])
    base = img[..., 0].mean() / img[..., 2].mean()
    assert ratio.max() > 1.2 * base and ratio.min() < base / 1.2
    # Off: no photometric change at all is impossible by construction, but the geometry holds:
    # the pill (saturated red) stays where it was.
    red = (img[..., 0].astype(int) - img[..., 2].astype(int)) > 100
    for o in outs[:5]:
        assert (o[..., 0].astype(int) - o[..., 2].astype(int))[red].mean() > 40


def test_photometric_jitter_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        photometric_jitter(np.zeros((8, 8), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        photometric_jitter(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))


def _union_masks(scene) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = np.zeros(scene.image.shape[:2], bool)
    for m in scene.masks:
        out |= m
    return out


def test_dense_piles_are_crowded_touching_and_labelled_by_what_shows(
    cutouts: list[Cutout],
) -> None:
    cfg = pile_config(SynthConfig(width=320, height=320, swap_orientation_prob=0.0))
    crowded = 0
    for i in range(6):
        scene = synthesize_scene(cutouts, np.random.default_rng([5, i]), cfg)
        n = len(scene.boxes)
        # Pills hidden under others (< 25 % showing) are dropped, so a pile may hold fewer.
        assert 10 <= n <= 40 and len(scene.masks) == n == len(scene.class_ids)
        w = scene.image.shape[1]
        assert (scene.boxes[:, :2] >= 0).all() and (scene.boxes[:, 2] <= w).all()
        # Piled scenes (most) keep the visible parts: no pixel belongs to two pills, and
        # each box is its visible part's box. Scattered ones keep whole pills.
        if sum(int(m.sum()) for m in scene.masks) != int(_union_masks(scene).sum()):
            continue
        for box, mask in zip(scene.boxes, scene.masks, strict=True):
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(box.astype(int))
        b = scene.boxes
        ix = np.maximum(
            0, np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        )
        iy = np.maximum(
            0, np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        )
        touching = ((ix * iy) > 0).sum() - n  # ordered pairs of distinct boxes that meet
        crowded += touching > n
    assert crowded >= 3  # most piles are piles, not scattered pills


def test_default_scenes_do_not_draw_pile_randomness(cutouts: list[Cutout]) -> None:
    # same_pill_prob / cluster_prob at 0 draw nothing: 1.x scene streams stay as they were.
    cfg = SynthConfig(width=200, height=160)
    a = synthesize_scene(cutouts, np.random.default_rng(11), cfg)
    b = synthesize_scene(
        cutouts, np.random.default_rng(11), cfg.model_copy(update={"cluster_prob": 0.0})
    )
    assert np.array_equal(a.image, b.image)
