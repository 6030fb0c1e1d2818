"""The second red-team's findings on SDK 0.8.0 (runtime side), each failing there.

A thin JPEG decoded at another DCT scale than recorded (boxes in the wrong place), every
crop of a photo preprocessed into one tensor (600 KB a crop, GBs for a re-sealed bundle's
large input), a TIFF tile far larger than its image inflated regardless of the pixel
budget, a raw ``OSError`` for an over-long bundle path, ``annotate`` leaking OpenCV and
numpy errors, a fixed-batch classifier passing ``bundle verify`` under a dynamic manifest,
and arguments accepted without the checks their siblings get.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tinymodels import CountingRunner, make_bundle, quadrant_image

import pillsnap_sdk.stages as stages_mod
from pillsnap_sdk import Identifier, Runners
from pillsnap_sdk.annotate import annotate, save_annotated
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.bundle.sources import BOMB_MIN_BYTES
from pillsnap_sdk.decode import decode_opened, open_checked
from pillsnap_sdk.errors import (
    BundleError,
    BundleIntegrityError,
    InvalidArgumentError,
    InvalidImageError,
    PillsnapError,
)
from pillsnap_sdk.image import load_image
from pillsnap_sdk.results import BBox, IdentifyResult

from .bundle_helpers import read_manifest, rehash, write_manifest


def _jpeg(w: int, h: int) -> bytes:
    arr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize(("w", "h"), [(4000, 3), (3, 4000), (2000, 5), (1600, 1200)])
def test_jpeg_scale_reported_is_the_scale_decoded(w: int, h: int) -> None:
    rgb, used = decode_opened(open_checked(_jpeg(w, h), 64_000_000, "t"), "t", scale=4)
    # The photo's boxes are mapped back with ``used``: it must describe what was decoded.
    assert rgb.shape[:2] == (-(-h // used), -(-w // used))


def test_classifier_preprocessing_is_chunked(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idf = Identifier.from_bundle(tiny_bundle)
    crops = [quadrant_image({i % 4: "red"}, size=40) for i in range(11)]
    whole = idf.classify_probabilities(crops)
    seen: list[int] = []
    real = stages_mod.preprocess_batch

    def spy(batch: Any, spec: Any) -> Any:
        seen.append(len(batch))
        return real(batch, spec)

    h, w = load_bundle(tiny_bundle).manifest.classifier.preprocessing.size
    monkeypatch.setattr(stages_mod, "preprocess_batch", spy)
    monkeypatch.setattr(stages_mod, "CHUNK_BYTES", 3 * 4 * h * w * 3)  # three crops
    chunked = idf.classify_probabilities(crops)
    assert seen == [3, 3, 3, 2]
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_fixed_batch_classifier_keeps_its_chunk(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", classifier_batch=4)
    base = Identifier.from_bundle(bundle)
    runner = CountingRunner(base._cls.runner)
    twin = base.with_runners(classifier=runner)
    twin.classify_probabilities([quadrant_image({0: "red"}, size=32)] * 6)
    assert runner.batches == [4, 4]  # padded to the model's fixed batch, not cut by bytes


def _tiled_tiff(width: int, height: int, tile: int) -> bytes:
    """A little-endian RGB TIFF whose one tile is ``tile`` x ``tile`` (data left out)."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (277, 3, 1, 3),
        (322, 4, 1, tile),
        (323, 4, 1, tile),
        (324, 4, 1, 200),
        (325, 4, 1, 16),
    ]
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, typ, count, val in entries:
        if typ == 3:
            out += struct.pack("<HHIHH", tag, typ, count, val, 0)
        else:
            out += struct.pack("<HHII", tag, typ, count, val)
    return (out + b"\x00" * 4).ljust(216, b"\x00")


def test_tiff_tile_counts_against_the_memory_budget() -> None:
    with pytest.raises(InvalidImageError, match="memory budget"):
        load_image(_tiled_tiff(10, 10, 4096), max_pixels=1_000_000)


def test_overlong_bundle_path_is_a_bundle_error(tmp_path: Path) -> None:
    for path in (tmp_path / ("x" * 300), Path("/" + "a/" * 2500)):
        with pytest.raises(BundleError, match="cannot open bundle") as info:
            Identifier.from_bundle(path)
        assert len(str(info.value)) < 400  # the path is shortened in the message


def _result(idf: Identifier, rgb: np.ndarray) -> IdentifyResult:
    return idf.identify(rgb)


def test_annotate_refuses_what_it_cannot_draw(idf_det: Identifier, tmp_path: Path) -> None:
    rgb = quadrant_image({0: "red", 3: "blue"})
    res = _result(idf_det, rgb)
    assert res.pills and res.pills[0].bbox is not None
    with pytest.raises(InvalidArgumentError, match="IdentifyResult"):
        annotate(rgb, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="128x128 photo, the image is 64x32"):
        annotate(np.zeros((32, 64, 3), np.uint8), res)
    nan = res.model_copy(
        update={
            "pills": [
                res.pills[0].model_copy(update={"bbox": BBox(x1=float("nan"), y1=0, x2=5, y2=5)})
            ]
        }
    )
    with pytest.raises(InvalidArgumentError, match="non-finite box"):
        annotate(rgb, nan)
    huge = res.model_copy(
        update={"pills": [res.pills[0].model_copy(update={"bbox": BBox(x1=0, y1=0, x2=3e9, y2=5)})]}
    )
    assert annotate(rgb, huge).shape == rgb.shape  # clamped to the photo, drawn
    for out in (tmp_path / "a.xyz", tmp_path, tmp_path / "missing" / "a.png", None):
        with pytest.raises(InvalidArgumentError):
            save_annotated(rgb, res, out)  # type: ignore[arg-type]
    written = save_annotated(rgb, res, tmp_path / "a.png")
    assert written.stat().st_size > 0


def test_save_annotated_write_failure_is_typed(
    idf_det: Identifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    rgb = quadrant_image({0: "red"})
    res = _result(idf_det, rgb)
    monkeypatch.setattr(cv2, "imwrite", lambda *a, **k: False)
    with pytest.raises(PillsnapError, match="cannot write"):
        save_annotated(rgb, res, tmp_path / "a.png")


def test_dynamic_manifest_over_fixed_batch_model_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", classifier_batch=1)
    raw = read_manifest(bundle)
    raw["classifier"]["input_shape"][0] = "N"
    write_manifest(bundle, raw, reseal=True)
    with pytest.raises(BundleError, match="dynamic batch"):
        Identifier.from_bundle(bundle)


def test_runner_objects_and_flags_are_checked_up_front(tiny_bundle: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="classifier runner needs a run"):
        Identifier.from_bundle(tiny_bundle, runners=Runners(classifier=object()))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="detector runner needs a run"):
        Identifier.from_bundle(tiny_bundle, runners=Runners(detector=42))  # type: ignore[arg-type]
    idf = Identifier.from_bundle(tiny_bundle)
    with pytest.raises(InvalidArgumentError, match="return_exceptions must be True or False"):
        idf.identify_batch([quadrant_image({0: "red"})], return_exceptions="no")  # type: ignore[call-overload]


def test_duplicate_codes_and_huge_versions_are_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    raw_labels = (bundle / "labels.json").read_text("utf-8")
    labels = json.loads(raw_labels)
    labels["classes"][1]["code"] = labels["classes"][0]["code"]
    (bundle / "labels.json").write_text(json.dumps(labels), "utf-8")
    rehash(bundle)
    with pytest.raises(BundleError, match="listed twice"):
        load_bundle(bundle)
    other = make_bundle(tmp_path / "c")
    raw = read_manifest(other)
    raw["version"] = "1.0.0-" + "a" * 100_000
    write_manifest(other, raw, reseal=True)
    with pytest.raises(BundleError):
        load_bundle(other)


def test_zip_bomb_member_is_refused_before_inflating(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(bundle.iterdir()):
            zf.write(f, f.name)
        zf.writestr("padding.bin", b"\0" * (BOMB_MIN_BYTES + 1))
    with pytest.raises(BundleIntegrityError, match="zip bomb"):
        load_bundle(bomb)
    plain = tmp_path / "plain.zip"  # the real bundle's files barely compress: accepted
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(bundle.iterdir()):
            zf.write(f, f.name)
    assert load_bundle(plain).manifest.name == "tiny-test"
