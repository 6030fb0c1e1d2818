"""Big JPEGs decoded in the DCT domain (pillsnap_sdk.photo): scale choice, geometry, crops.

Why: the speed-up must not change what a small photo gets (same pixels, same results),
must report boxes in full-size pixels, must honour EXIF orientation and the input limits
at every scale, and must give a pill too small for the coarse decode a crop from a finer one.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pillsnap_sdk import Identifier
from pillsnap_sdk.decode import decode_bytes
from pillsnap_sdk.errors import InvalidImageError
from pillsnap_sdk.image import load_image
from pillsnap_sdk.photo import (
    MIN_CROP_SIDE,
    Photo,
    crop_scale,
    input_factor,
    load_photo,
    take_crops,
    to_full,
)
from pillsnap_sdk.preprocessing import PreprocessSpec, crop_with_margin
from tests.tinymodels import quadrant_image

DET = PreprocessSpec(resize="letterbox", size=(448, 448))


def _jpeg(rgb: np.ndarray, orientation: int | None = None, quality: int = 92) -> bytes:
    img = Image.fromarray(rgb)
    buf = io.BytesIO()
    if orientation is None:
        img.save(buf, "JPEG", quality=quality)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def _photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 53.0) * np.cos(yy / 71.0)
    noise = rng.normal(0, 4, (h, w, 3))
    out: np.ndarray = np.clip(base[:, :, None] + noise, 0, 255).astype(np.uint8)
    return out


def _load(data: object, det: PreprocessSpec | None = DET) -> Photo:
    return load_photo(data, max_pixels=64_000_000, channel_order="RGB", detector=det)  # type: ignore[arg-type]


def test_small_jpeg_is_decoded_exactly_as_before() -> None:
    data = _jpeg(_photo(640, 480))
    photo = _load(data)
    assert photo.scale == 1 and photo.size == (640, 480) and photo.encoded is None
    assert np.array_equal(photo.rgb, load_image(data))


def test_big_jpeg_is_decoded_as_coarsely_as_the_detector_allows() -> None:
    data = _jpeg(_photo(4032, 3024))
    photo = _load(data)
    assert photo.scale == 4 and photo.size == (4032, 3024)
    assert photo.rgb.shape == (756, 1008, 3)  # twice the 448x448 input (DETECTOR_OVERSAMPLE)
    assert 2 * input_factor(DET, 1008, 756) <= 1.0 < 2 * input_factor(DET, 504, 378)
    assert np.array_equal(photo.pixels(1), load_image(data))
    assert np.array_equal(photo.pixels(4), decode_bytes(data, 64_000_000, "x", scale=4))
    with pytest.raises(ValueError):
        photo.pixels(8)  # coarser than decoded


def test_middle_sizes_pick_the_coarsest_sufficient_scale() -> None:
    assert _load(_jpeg(_photo(2000, 1500))).scale == 2  # 1000x750 >= 2 x 448
    assert _load(_jpeg(_photo(1792, 1344))).scale == 2  # exactly 2 x 448
    assert _load(_jpeg(_photo(1780, 1335))).scale == 1  # 890 < 896: full size


def test_png_arrays_and_no_detector_stay_full_size() -> None:
    rgb = _photo(2000, 1500)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    assert _load(buf.getvalue()).scale == 1
    assert _load(rgb).scale == 1 and _load(rgb).rgb is not None
    assert _load(_jpeg(rgb), det=None).scale == 1


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_at_every_scale(orientation: int) -> None:
    data = _jpeg(_photo(2400, 1600), orientation)
    photo = _load(data)
    full = load_image(data)
    assert photo.scale == 2
    assert photo.size == (full.shape[1], full.shape[0])
    assert photo.rgb.shape[:2] == (-(-full.shape[0] // 2), -(-full.shape[1] // 2))
    assert np.array_equal(photo.pixels(1), full)
    # the coarse pixels are the full-size ones, averaged: same picture, same way up
    small = full[: photo.rgb.shape[0] * 2, : photo.rgb.shape[1] * 2].astype(np.float32)
    pooled = small.reshape(photo.rgb.shape[0], 2, photo.rgb.shape[1], 2, 3).mean(axis=(1, 3))
    assert np.abs(pooled - photo.rgb).mean() < 3.0


def test_truncated_big_jpeg_is_a_typed_error_at_any_scale() -> None:
    data = _jpeg(_photo(4032, 3024))
    cut = data[: len(data) * 2 // 3]
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        _load(cut)
    with pytest.raises(InvalidImageError, match="exceeds the limit"):
        load_photo(data, max_pixels=1_000_000, channel_order="RGB", detector=DET)


def test_boxes_map_to_full_size_and_clip() -> None:
    photo = Photo(np.zeros((378, 504, 3), np.uint8), 8, (4030, 3020), b"x", 1, "x")  # 1/8
    boxes = np.array([[10, 20, 30, 40], [500, 370, 504, 378]], np.float32)
    out = to_full(boxes, photo)
    assert out[0].tolist() == [80, 160, 240, 320]
    assert out[1].tolist() == [4000, 2960, 4030, 3020]


def test_tiny_pills_get_finer_crops_others_come_from_the_coarse_decode() -> None:
    data = _jpeg(_photo(4032, 3024))
    photo = _load(data)  # 1/4
    full = load_image(data)
    pill = (1000.0, 1000.0, 1150.0, 1120.0)  # crop ~195 px: 48 px at 1/4 >= MIN_CROP_SIDE
    tiny = (2000.0, 1000.0, 2080.0, 1060.0)  # crop ~104 px: 26 px at 1/4, 52 at 1/2
    speck = (3000.0, 2000.0, 3030.0, 2020.0)  # crop ~39 px: full size
    assert MIN_CROP_SIDE == 32
    assert crop_scale(photo, [pill], 0.15) == 4
    assert crop_scale(photo, [pill, tiny], 0.15) == 2
    assert crop_scale(photo, [speck, pill], 0.15) == 1
    (coarse,) = take_crops(photo, [pill], 0.15)
    assert np.array_equal(coarse, crop_with_margin(photo.rgb, tuple(v / 4 for v in pill), 0.15))
    timings: dict[str, float] = {"decode": 1.0}
    crops = take_crops(photo, [speck, pill], 0.15, timings)
    assert np.array_equal(crops[0], crop_with_margin(full, speck, 0.15))
    assert timings["decode"] > 1.0  # the finer decode is counted as decoding
    half = take_crops(photo, [tiny], 0.15)[0]
    assert 32 <= max(half.shape[:2]) <= 60


def test_identify_on_a_big_jpeg_reports_full_size_geometry(tiny_bundle: Path) -> None:
    idf = Identifier.from_bundle(tiny_bundle)
    rgb = quadrant_image({0: "red", 3: "blue"}, size=512)
    data = _jpeg(rgb, quality=95)
    big = idf.identify(data)
    ref = idf.identify(load_image(data))  # the same pixels, at full size
    assert big.image_size == ref.image_size == (512, 512)
    assert [p.label.code if p.label else None for p in big.pills] == [
        p.label.code if p.label else None for p in ref.pills
    ]
    for a, b in zip(big.pills, ref.pills, strict=True):
        assert a.bbox is not None and b.bbox is not None
        assert np.allclose(a.bbox.as_tuple(), b.bbox.as_tuple(), atol=8.0)
    det = idf.detect(data)
    assert np.allclose(det.boxes, [p.bbox.as_tuple() for p in big.pills if p.bbox], atol=1e-3)
