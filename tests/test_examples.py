"""The README's first command, checked: the default bundle names the example photos right.

Why a test: the example photos are what a new user sees first; a new default bundle that
misses or misnames a pill there must fail CI, not ship a README that prints wrong answers.
Ground truth (boxes + classes) comes from the dataset's labels: examples/ground_truth.json.
"""

from __future__ import annotations

import json
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


#: Boxes on no pill that a README photo may show, each only as "unknown" (never a drug
#: name). 2.2.0's detector boxed the finger base in single_pill.jpg; 2.3.0's boxes a round
#: app icon on the laptop screen behind the hand in multi_pills.jpg instead, and the
#: classifier, trained on pill-free crops, refuses it (36 %). A detector that finds more
#: pills (validation recall 89.8 % vs 83.7 %) also scores more pill-like shapes.
MAX_UNKNOWN_EXTRA_BOXES = 1


@pytest.mark.parametrize("name", README_PHOTOS)
def test_readme_photos_are_named_right(idf: Identifier, name: str) -> None:
    """Every pill found and named right, no drug name anywhere else, at most one extra box
    and that one "unknown"."""
    truth = TRUTH[name]["pills"]
    res = idf.identify(EXAMPLES / name)
    boxed = [p for p in res.pills if p.bbox is not None]
    if len(truth) == 1 and not boxed:  # the single route: the photo is the pill
        assert len(res.pills) == 1
        assert res.pills[0].label is not None and res.pills[0].label.code == truth[0]["code"]
        return
    matched: set[int] = set()
    extra = []
    for pill in res.pills:
        assert pill.bbox is not None, [p.label for p in res.pills]
        ious = [_iou(list(pill.bbox.as_tuple()), t["box"]) for t in truth]
        j = int(np.argmax(ious))
        if ious[j] >= 0.5 and j not in matched:
            matched.add(j)
            assert pill.label is not None and pill.label.code == truth[j]["code"], (
                truth[j]["code"],
                pill.label,
            )
        else:
            extra.append(pill)
    assert matched == set(range(len(truth))), "a pill of the photo was not found"
    assert len(extra) <= MAX_UNKNOWN_EXTRA_BOXES, [p.label for p in extra]
    for pill in extra:  # a box on no pill may say "not sure", never a drug name
        assert pill.status == "unknown", (pill.status, pill.label)


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
