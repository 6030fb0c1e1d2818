"""The README's first command, checked: the default bundle names the example photos right.

Why a test: the example photos are what a new user sees first; a new default bundle that
misses or misnames a pill there must fail CI, not ship a README that prints wrong answers.
Ground truth (boxes + classes) comes from the dataset's labels: examples/ground_truth.json.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pillsnap_sdk import Identifier
from pillsnap_sdk.boxes import box_iou
from pillsnap_sdk.defaults import default_bundle_path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TRUTH = json.loads((EXAMPLES / "ground_truth.json").read_text(encoding="utf-8"))["images"]
#: Photos the README's first command runs: every pill must be found and named right.
README_PHOTOS = ("multi_pills.jpg", "single_pill.jpg")


@pytest.fixture(scope="module")
def idf() -> Identifier:
    return Identifier.from_bundle(default_bundle_path())


def _iou(a: list[float], b: list[float]) -> float:
    pair = np.asarray([a, b], np.float32)
    return float(box_iou(pair[:1], pair[1:])[0, 0])


def test_every_example_has_ground_truth() -> None:
    photos = sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    assert photos == sorted(TRUTH)
    for name in README_PHOTOS:
        assert name in photos


@pytest.mark.parametrize("name", README_PHOTOS)
def test_readme_photos_are_named_right(idf: Identifier, name: str) -> None:
    truth = TRUTH[name]["pills"]
    res = idf.identify(EXAMPLES / name)
    assert len(res.pills) == len(truth), [p.label for p in res.pills]
    named = Counter(p.label.code if p.label else "unknown" for p in res.pills)
    assert named == Counter(t["code"] for t in truth)
    if len(truth) > 1:  # each box lands on a pill of that class
        for pill in res.pills:
            assert pill.bbox is not None and pill.label is not None
            best = max(truth, key=lambda t: _iou(list(pill.bbox.as_tuple()), t["box"]))
            assert _iou(list(pill.bbox.as_tuple()), best["box"]) >= 0.5
            assert best["code"] == pill.label.code


def test_harder_table_photo_stays_mostly_right(idf: Identifier) -> None:
    """22 small pills: since 2.0.0 the bundle would rather say "not sure" than name a drug
    wrongly (README): no pill may be named as the wrong drug, and most must be named."""
    truth = TRUTH["table_22_pills.jpg"]["pills"]
    res = idf.identify(EXAMPLES / "table_22_pills.jpg")
    correct = wrong = 0
    used: set[int] = set()
    for pill in res.pills:
        if pill.bbox is None or pill.label is None:
            continue
        ious = [_iou(list(pill.bbox.as_tuple()), t["box"]) for t in truth]
        j = int(np.argmax(ious))
        if ious[j] < 0.5 or j in used:
            continue
        used.add(j)
        if truth[j]["code"] == pill.label.code:
            correct += 1
        else:
            wrong += 1
    assert wrong == 0, f"{wrong} pill(s) named as the wrong drug"
    assert correct >= 0.6 * len(truth), correct
