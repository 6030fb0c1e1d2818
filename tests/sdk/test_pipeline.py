"""Router decisions, unknown threshold, top_k, input kinds and results on tiny models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tinymodels import COLOURS, make_bundle, quadrant_image

from pillsnap_sdk import (
    Identifier,
    IdentifyResult,
    InvalidArgumentError,
    InvalidImageError,
    PillsnapError,
)


@pytest.fixture(scope="module")
def idf(tiny_bundle: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def idf_nodet(tiny_bundle_nodet: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle_nodet)


def _names(res: IdentifyResult) -> list[str | None]:
    return [p.label.name if p.label else None for p in res.pills]


def test_auto_two_or_more_pills_is_combo(idf: Identifier) -> None:
    res = idf.identify(quadrant_image({0: "red", 3: "blue", 1: "green"}))
    assert res.mode_used == "combo"
    assert sorted(_names(res)) == ["blue pill", "green pill", "red pill"]  # type: ignore[type-var]
    for p in res.pills:
        assert p.bbox is not None and p.detection_confidence is not None
        assert p.detection_confidence > 0.5


def test_combo_boxes_are_in_source_pixels(idf: Identifier) -> None:
    img = quadrant_image({3: "blue", 0: "red"}, size=256)
    res = idf.identify(img)
    by_name = {p.label.name: p.bbox for p in res.pills if p.label}
    red, blue = by_name["red pill"], by_name["blue pill"]
    assert red is not None and blue is not None
    # Quadrant anchors are (q/2, q/2) +- 0.375 q on the 64 px input; scaled x4 to 256 px.
    assert red.as_tuple() == pytest.approx((16, 16, 112, 112), abs=1e-3)
    assert blue.as_tuple() == pytest.approx((144, 144, 240, 240), abs=1e-3)


def test_auto_one_pill_classifies_its_crop(idf: Identifier) -> None:
    res = idf.identify(quadrant_image({2: "green"}))
    assert res.mode_used == "single" and len(res.pills) == 1
    assert res.pills[0].bbox is not None and _names(res) == ["green pill"]
    assert res.warnings == []


def test_auto_no_pill_falls_back_to_whole_photo(idf: Identifier) -> None:
    res = idf.identify(np.full((100, 100, 3), (0, 0, 5), np.uint8))
    assert res.mode_used == "single" and "no_pill_detected" in res.warnings
    assert len(res.pills) == 1 and res.pills[0].bbox is None


def test_single_mode_skips_detector(idf: Identifier) -> None:
    res = idf.identify(quadrant_image({0: "red", 1: "red", 2: "red", 3: "red"}), mode="single")
    assert res.mode_used == "single" and len(res.pills) == 1 and res.pills[0].bbox is None
    assert "detect" not in res.timings_ms and _names(res) == ["red pill"]


def test_combo_mode_with_no_detection_returns_no_pills(idf: Identifier) -> None:
    res = idf.identify(np.zeros((64, 64, 3), np.uint8), mode="combo")
    assert res.mode_used == "combo" and res.pills == [] and "no_pill_detected" in res.warnings


def test_combo_mode_with_one_detection_is_combo(idf: Identifier) -> None:
    res = idf.identify(quadrant_image({1: "blue"}), mode="combo")
    assert res.mode_used == "combo" and _names(res) == ["blue pill"]


def test_bundle_without_detector_auto_means_single(idf_nodet: Identifier) -> None:
    res = idf_nodet.identify(quadrant_image({0: "red", 3: "red"}))
    assert res.mode_used == "single" and res.pills[0].bbox is None
    with pytest.raises(InvalidArgumentError, match="no detector"):
        idf_nodet.identify(quadrant_image({0: "red"}), mode="combo")


def test_unknown_below_threshold_keeps_candidates(idf: Identifier) -> None:
    grey = np.full((40, 40, 3), 128, np.uint8)  # equal logits -> p = 1/3 < 0.6
    res = idf.identify(grey, mode="single", top_k=3)
    pill = res.pills[0]
    assert pill.status == "unknown" and pill.label is None
    assert len(pill.candidates) == 3
    assert sum(c.confidence for c in pill.candidates) == pytest.approx(1.0, abs=1e-5)


def test_threshold_and_temperature_come_from_manifest(tmp_path: Path) -> None:
    # Pure red: logits (10, -10, -10). T=40 softens to p ~ 0.45 < 0.6 -> unknown.
    hot = Identifier.from_bundle(make_bundle(tmp_path / "hot", thresholds={"temperature": 40.0}))
    img = np.full((32, 32, 3), COLOURS["red"], np.uint8)
    res = hot.identify(img, mode="single")
    assert res.pills[0].status == "unknown"
    assert res.pills[0].candidates[0].name == "red pill"
    lax = Identifier.from_bundle(
        make_bundle(tmp_path / "lax", thresholds={"temperature": 40.0, "unknown_threshold": 0.4})
    )
    assert lax.identify(img, mode="single").pills[0].status == "identified"


def test_confidences_are_calibrated_softmax(idf: Identifier) -> None:
    img = np.full((32, 32, 3), (200, 100, 50), np.uint8)
    probs = idf.classify_probabilities([img])[0]
    mean = np.array([200, 100, 50]) / 255.0
    logits = mean @ (np.full((3, 3), -5.0) + np.eye(3) * 10.0) * 2.0
    ref = np.exp(logits - logits.max())
    np.testing.assert_allclose(probs, ref / ref.sum(), atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_top_k(idf: Identifier, k: int) -> None:
    res = idf.identify(np.full((32, 32, 3), COLOURS["blue"], np.uint8), mode="single", top_k=k)
    cands = res.pills[0].candidates
    assert len(cands) == min(k, 3)
    assert [c.confidence for c in cands] == sorted((c.confidence for c in cands), reverse=True)
    assert cands[0].code == "K-000002" and cands[0].metadata["colour"] == "blue"


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_bad_top_k(idf: Identifier, bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        idf.identify(quadrant_image({0: "red"}), top_k=bad)  # type: ignore[arg-type]


def test_bad_mode(idf: Identifier) -> None:
    with pytest.raises(InvalidArgumentError, match="mode"):
        idf.identify(quadrant_image({0: "red"}), mode="both")  # type: ignore[arg-type]


def test_every_input_kind_gives_the_same_result(idf: Identifier, tmp_path: Path) -> None:
    arr = quadrant_image({0: "red", 3: "green"})
    png = tmp_path / "q.png"
    Image.fromarray(arr).save(png)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    inputs = [
        arr,
        str(png),
        png,
        png.read_bytes(),
        bytearray(buf.getvalue()),
        Image.fromarray(arr),
        np.asfortranarray(arr),
    ]
    dumps = {idf.identify(x).model_dump_json(exclude={"timings_ms"}) for x in inputs}
    assert len(dumps) == 1


def test_grey_numpy_input(idf: Identifier) -> None:
    res = idf.identify(np.full((50, 60), 128, np.uint8), mode="single")
    assert res.image_size == (60, 50)


def test_invalid_image_is_typed(idf: Identifier, tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(InvalidImageError, match="not a decodable image"):
        idf.identify(bad)
    with pytest.raises(InvalidImageError, match="no such image"):
        idf.identify(tmp_path / "missing.jpg")
    with pytest.raises(PillsnapError):
        idf.identify(12345)  # type: ignore[arg-type]


def test_identify_batch_matches_identify(idf: Identifier) -> None:
    imgs = [
        quadrant_image({0: "red", 3: "blue"}),
        quadrant_image({2: "green"}),
        np.zeros((30, 30, 3), np.uint8),
    ]
    batch = idf.identify_batch(imgs)
    single = [idf.identify(im) for im in imgs]
    ex = {"timings_ms"}
    assert [r.model_dump_json(exclude=ex) for r in batch] == [
        r.model_dump_json(exclude=ex) for r in single
    ]
    assert idf.identify_batch([]) == []


def test_result_fields_and_json(idf: Identifier) -> None:
    res = idf.identify(quadrant_image({0: "red", 1: "blue"}))
    assert res.bundle.name == "tiny-test" and res.bundle.version == "1.0.0"
    assert res.image_size == (128, 128)
    for key in ("decode", "detect", "classify", "total"):
        assert res.timings_ms[key] >= 0.0
    data = res.model_dump(mode="json")
    assert data["pills"][0]["label"]["name"] in {"red pill", "blue pill"}
    assert IdentifyResult.model_validate_json(res.model_dump_json()).pills[0].bbox is not None


def test_fixed_batch_classifier_is_chunked(tmp_path: Path) -> None:
    idf = Identifier.from_bundle(make_bundle(tmp_path / "b1", classifier_batch=1))
    res = idf.identify(quadrant_image({0: "red", 1: "green", 3: "blue"}))
    assert sorted(_names(res)) == ["blue pill", "green pill", "red pill"]  # type: ignore[type-var]


def test_unknown_margin_abstains_between_two_lookalikes(tmp_path: Path) -> None:
    # Mean colour (200, 160, 20): logits 2*(5R - 5G - 5B, ...) -> red and green close, blue
    # far. The top-1 clears a 0.5 threshold but beats green by less than the margin.
    img = np.full((32, 32, 3), (200, 170, 20), np.uint8)
    plain = Identifier.from_bundle(
        make_bundle(tmp_path / "plain", thresholds={"unknown_threshold": 0.5})
    )
    probs = plain.classify_probabilities([img])[0]
    top = np.sort(probs)[::-1]
    assert top[0] >= 0.5 and top[0] - top[1] < 0.9  # the case the margin exists for
    assert plain.identify(img, mode="single").pills[0].status == "identified"
    strict = Identifier.from_bundle(
        make_bundle(
            tmp_path / "strict",
            thresholds={"unknown_threshold": 0.5, "unknown_margin": float(top[0] - top[1]) + 0.01},
        )
    )
    pill = strict.identify(img, mode="single").pills[0]
    assert pill.status == "unknown" and pill.label is None
    assert pill.candidates[0].name == plain.identify(img, mode="single").pills[0].label.name  # type: ignore[union-attr]
    # A clear winner still passes the same margin.
    red = np.full((32, 32, 3), COLOURS["red"], np.uint8)
    assert strict.identify(red, mode="single").pills[0].status == "identified"
