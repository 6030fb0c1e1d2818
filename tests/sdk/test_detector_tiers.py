"""A second detector tier (``thresholds.detector_confidence_named``): boxes the detector
is unsure of count as pills only when the classifier names them, and never twice.

Engines are stand-ins (:class:`pillsnap_sdk.Runners`), so each box's score and each crop's
answer are set by the test: red crops are class 0 and green crops class 1 with confidence,
blue crops get flat logits (``unknown``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tinymodels import DET_SIZE, make_bundle

from pillsnap_sdk import BundleError, Detections, Identifier, Runners
from pillsnap_sdk.router import tier_boxes

from .bundle_helpers import read_manifest, write_manifest

RED, GREEN, BLUE = (220, 30, 30), (30, 220, 30), (30, 30, 220)
# (x1, y1, x2, y2, score, colour) in photo pixels; the photo is DET_SIZE square, so the
# detector's letterbox is the identity.
BOXES: list[tuple[int, int, int, int, float, tuple[int, int, int]]] = [
    (2, 2, 22, 22, 0.90, RED),  # confident, named
    (40, 2, 60, 22, 0.30, GREEN),  # tentative, named -> kept
    (2, 40, 22, 60, 0.30, BLUE),  # tentative, unknown -> dropped
    (40, 40, 60, 60, 0.80, BLUE),  # confident, unknown -> kept as unknown
    (4, 4, 14, 14, 0.35, RED),  # tentative, inside the confident red pill -> dropped
    (44, 44, 52, 52, 0.05, GREEN),  # under both tiers -> never seen
]


def _photo() -> np.ndarray:
    img = np.full((DET_SIZE, DET_SIZE, 3), 128, np.uint8)
    for x1, y1, x2, y2, _, colour in BOXES[:4]:
        img[y1:y2, x1:x2] = colour
    return img


class FakeDetector:
    """YOLO-format output (1, 4 + 1, N) holding :data:`BOXES`."""

    def run(self, _names: Any, _feeds: dict[str, Any]) -> list[np.ndarray]:
        cols = [
            [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, s] for x1, y1, x2, y2, s, _ in BOXES
        ]
        return [np.asarray(cols, np.float32).T[None]]


class FakeClassifier:
    """Logits from each crop's mean colour: red -> class 0, green -> class 1, else flat."""

    def run(self, _names: Any, feeds: dict[str, Any]) -> list[np.ndarray]:
        (x,) = feeds.values()
        out = np.zeros((x.shape[0], 3), np.float32)
        for i, m in enumerate(x.mean(axis=(2, 3))):
            if m[0] > m[1] + 0.2 and m[0] > m[2] + 0.2:
                out[i, 0] = 10.0
            elif m[1] > m[0] + 0.2 and m[1] > m[2] + 0.2:
                out[i, 1] = 10.0
        return [out]


def _identifier(tmp_path: Path, **thresholds: Any) -> Identifier:
    th = {"unknown_threshold": 0.9, "detector_confidence": 0.5, "crop_margin": 0.0}
    bundle = make_bundle(tmp_path, thresholds={**th, **thresholds}, min_sdk_version="0.5.0")
    return Identifier.from_bundle(
        bundle, runners=Runners(classifier=FakeClassifier(), detector=FakeDetector())
    )


def _answers(idf: Identifier) -> list[tuple[int, int, str]]:
    """(x1, y1, code or "?") of every pill, sorted."""
    res = idf.identify(_photo(), mode="auto")
    return sorted(
        (round(p.bbox.x1), round(p.bbox.y1), p.label.code if p.label else "?")
        for p in res.pills
        if p.bbox is not None
    )


def test_tentative_boxes_count_only_when_named(tmp_path: Path) -> None:
    idf = _identifier(tmp_path, detector_confidence_named=0.2)
    codes = [e.code for e in idf.labels.classes]
    # red (confident), green (tentative, named), blue (confident, unknown); the blue
    # tentative box and the box inside the red pill are gone.
    assert _answers(idf) == sorted([(2, 2, codes[0]), (40, 2, codes[1]), (40, 40, "?")])
    # detect() reports what the detector is sure of: the confident tier only.
    det = idf.detect(_photo())
    assert isinstance(det, Detections) and sorted(det.scores.tolist()) == pytest.approx([0.8, 0.9])


def test_one_tier_is_unchanged(tmp_path: Path) -> None:
    idf = _identifier(tmp_path)
    codes = [e.code for e in idf.labels.classes]
    assert _answers(idf) == sorted([(2, 2, codes[0]), (40, 40, "?")])


def test_tiers_must_be_ordered(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="detector_confidence_named"):  # the writer refuses
        _identifier(tmp_path / "w", detector_confidence_named=0.6)
    bundle = make_bundle(tmp_path / "b", min_sdk_version="0.5.0")
    raw = read_manifest(bundle)  # a hand-edited (resealed) manifest: the loader refuses
    raw["thresholds"].update(detector_confidence=0.3, detector_confidence_named=0.6)
    write_manifest(bundle, raw, reseal=True)
    with pytest.raises(BundleError, match="detector_confidence_named"):
        Identifier.from_bundle(bundle)


def test_tier_boxes_without_a_confident_box_is_no_detection() -> None:
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    det = Detections(boxes, np.array([0.3, 0.2], np.float32))
    kept, tentative = tier_boxes(det, 0.5)
    assert len(kept.scores) == 0 and len(tentative) == 0
    same, none_tentative = tier_boxes(det, None)  # one tier: everything, nothing tentative
    assert same is det and not none_tentative.any()


def test_tier_boxes_drops_a_part_of_a_confident_pill_keeps_a_neighbour() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 6, 6], [9, 0, 19, 10], [30, 0, 40, 10]], np.float32
    )  # confident; inside it; touching it (10 % overlap); apart
    det = Detections(boxes, np.array([0.9, 0.4, 0.3, 0.2], np.float32))
    kept, tentative = tier_boxes(det, 0.5)
    assert kept.boxes[:, 0].tolist() == [0, 9, 30]
    assert tentative.tolist() == [False, True, True]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (0, "detector_confidence_named"),
        (0.001, "detector_confidence_named"),
        (1.5, "detector_confidence_named"),
        (-1, "detector_confidence_named"),
        ("0.2", "detector_confidence_named"),
        (True, "detector_confidence_named"),
        ([0.2], "detector_confidence_named"),
        (float("nan"), "not acceptable JSON"),  # refused by the JSON reader already
        (float("inf"), "not acceptable JSON"),
    ],
)
def test_bad_second_tier_values_are_refused(tmp_path: Path, bad: Any, why: str) -> None:
    """A tampered tier value is a typed BundleError at load, never a silent detector floor."""
    bundle = make_bundle(tmp_path, min_sdk_version="0.5.0")
    raw = read_manifest(bundle)
    raw["thresholds"]["detector_confidence_named"] = bad
    write_manifest(bundle, raw, reseal=True)
    with pytest.raises(BundleError, match=why):
        Identifier.from_bundle(bundle)
