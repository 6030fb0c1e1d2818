"""Preprocessing: geometry is exact and invertible; normalisation matches the formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pillsnap_sdk.preprocessing import (
    PreprocessSpec,
    crop_with_margin,
    preprocess,
    preprocess_batch,
)


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["letterbox", "stretch", "center-crop"])
@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (37, 301), (224, 224), (1, 1)])
def test_output_shape_dtype(mode: str, hw: tuple[int, int]) -> None:
    spec = PreprocessSpec(resize=mode, size=(64, 96))  # type: ignore[arg-type]
    t, _ = preprocess(_img(*hw), spec)
    assert t.shape == (3, 64, 96) and t.dtype == np.float32 and t.flags.c_contiguous


def test_normalisation_formula_and_bgr() -> None:
    img = _img(16, 16)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    spec = PreprocessSpec(resize="stretch", size=(16, 16), mean=mean, std=std)
    t, _ = preprocess(img, spec)
    ref = (img.astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(t, ref.transpose(2, 0, 1), atol=1e-5)
    bgr = PreprocessSpec(resize="stretch", size=(16, 16), colour_order="BGR")
    tb, _ = preprocess(img, bgr)
    np.testing.assert_allclose(tb[0], img[:, :, 2] / 255.0, atol=1e-6)


def test_letterbox_pads_with_pad_value_and_centres() -> None:
    spec = PreprocessSpec(resize="letterbox", size=(100, 100), pad_value=7)
    img = np.full((50, 100, 3), 200, np.uint8)
    t, geom = preprocess(img, PreprocessSpec(**{**spec.model_dump(), "mean": (0, 0, 0)}))
    assert geom.pad_y == 25 and geom.pad_x == 0
    assert np.allclose(t[:, :25], 7 / 255.0) and np.allclose(t[:, 75:], 7 / 255.0)
    assert np.allclose(t[:, 25:75], 200 / 255.0)


@settings(max_examples=60, deadline=None)
@given(
    src_w=st.integers(8, 3000),
    src_h=st.integers(8, 3000),
    out=st.sampled_from([(64, 64), (640, 640), (320, 480)]),
    fx=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)
def test_letterbox_inverse_mapping_roundtrip(
    src_w: int, src_h: int, out: tuple[int, int], fx: tuple[float, float, float, float]
) -> None:
    """A box mapped to the network input and back lands where it started (to 1e-3 px)."""
    spec = PreprocessSpec(resize="letterbox", size=out)
    _, geom = preprocess(np.zeros((src_h, src_w, 3), np.uint8), spec)
    x1, x2 = sorted((fx[0] * src_w, fx[1] * src_w))
    y1, y2 = sorted((fx[2] * src_h, fx[3] * src_h))
    box = np.array([[x1, y1, x2, y2]], np.float32)
    back = geom.to_source(geom.to_network(box))
    np.testing.assert_allclose(back, box, atol=max(src_w, src_h) * 1e-5 + 1e-3)
    # The resized image fits inside the network input, centred.
    assert 0 <= geom.pad_x <= out[1] and 0 <= geom.pad_y <= out[0]


def test_letterbox_maps_real_pixels() -> None:
    """A white square drawn in the source appears where to_network says it is."""
    img = np.zeros((300, 600, 3), np.uint8)
    img[100:200, 250:350] = 255
    spec = PreprocessSpec(resize="letterbox", size=(320, 320), mean=(0, 0, 0))
    t, geom = preprocess(img, spec)
    ((nx1, ny1, nx2, ny2),) = geom.to_network(np.array([[250, 100, 350, 200]], np.float32))
    ys, xs = np.nonzero(t[0] > 0.5)
    assert abs(xs.min() - nx1) <= 1 and abs(xs.max() + 1 - nx2) <= 1
    assert abs(ys.min() - ny1) <= 1 and abs(ys.max() + 1 - ny2) <= 1


def test_to_source_clips_to_image() -> None:
    spec = PreprocessSpec(resize="letterbox", size=(64, 64))
    _, geom = preprocess(np.zeros((32, 64, 3), np.uint8), spec)
    out = geom.to_source(np.array([[-10, -10, 100, 100]], np.float32))
    assert out.tolist() == [[0.0, 0.0, 64.0, 32.0]]


def test_batch_equals_single() -> None:
    spec = PreprocessSpec(resize="letterbox", size=(48, 48), mean=(0.5,) * 3, std=(0.5,) * 3)
    imgs = [_img(30, 50, 1), _img(90, 20, 2), _img(48, 48, 3)]
    batch, _ = preprocess_batch(imgs, spec)
    for i, im in enumerate(imgs):
        np.testing.assert_array_equal(batch[i], preprocess(im, spec)[0])


def test_crop_with_margin_bounds() -> None:
    img = _img(100, 200)
    crop = crop_with_margin(img, (50, 30, 70, 70), 0.5)
    assert crop.shape == (80, 40, 3)  # 20x40 box grown by 10/20 px on each side
    clipped = crop_with_margin(img, (10, 10, 30, 50), 0.5)
    assert clipped.shape == (70, 40, 3)  # the top margin is cut by the image border
    edge = crop_with_margin(img, (190, 90, 200, 100), 1.0)
    assert edge.shape[0] >= 1 and edge.shape[1] >= 1
    outside = crop_with_margin(img, (500, 500, 600, 600), 0.1)
    assert outside.size > 0  # never an empty crop, even for an off-image box


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        PreprocessSpec(std=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        PreprocessSpec(size=(0, 10))
    with pytest.raises(ValueError):
        PreprocessSpec(resize="zoom")  # type: ignore[arg-type]


def _ramp(w: int, h: int = 3) -> np.ndarray:
    row = np.linspace(0, 240, w).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], h, 0), 3, 2)


def test_area_linear_enlarges_smoothly_and_shrinks_by_area() -> None:
    import cv2

    from pillsnap_sdk.preprocessing import resize_image

    small = _ramp(4)
    up_area = resize_image(
        small, PreprocessSpec(resize="stretch", size=(3, 10), interpolation="area")
    )[0]
    up = resize_image(
        small, PreprocessSpec(resize="stretch", size=(3, 10), interpolation="area-linear")
    )[0]
    # INTER_AREA enlarging repeats pixels (blocks); area-linear is OpenCV's linear filter.
    assert int((np.diff(up_area[0, :, 0].astype(int)) == 0).sum()) >= 3
    np.testing.assert_array_equal(up, cv2.resize(small, (10, 3), interpolation=cv2.INTER_LINEAR))
    assert int((np.diff(up[0, :, 0].astype(int)) == 0).sum()) == 0
    big = _ramp(40, 30)
    down = resize_image(
        big, PreprocessSpec(resize="stretch", size=(6, 8), interpolation="area-linear")
    )[0]
    np.testing.assert_array_equal(down, cv2.resize(big, (8, 6), interpolation=cv2.INTER_AREA))


def test_area_linear_gives_one_picture_at_two_resolutions() -> None:
    # The same pill at 60 px and at 6x that (a 12 MP photo of the scene) must reach the
    # network as nearly the same tensor; INTER_AREA's blocky enlargement does not.
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8), (0, 0), 2.0)
    large = cv2.resize(base, (360, 360), interpolation=cv2.INTER_CUBIC)
    diffs = {}
    for interp in ("area", "area-linear"):
        spec = PreprocessSpec(resize="letterbox", size=(224, 224), interpolation=interp)  # type: ignore[arg-type]
        a, b = preprocess(base, spec)[0], preprocess(large, spec)[0]
        diffs[interp] = float(np.abs(a - b).mean())
    assert diffs["area-linear"] < 0.5 * diffs["area"]
