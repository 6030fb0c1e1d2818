"""The runner door: other engines run through the SDK's own stages, results unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tinymodels import CountingRunner, make_bundle

from pillsnap_sdk import Detections, Identifier, InvalidArgumentError, Runners
from pillsnap_sdk.image import load_image

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "models" / "pushin-pill-edge"
PHOTO = REPO / "examples" / "multi_pills.jpg"


@pytest.fixture(scope="module")
def idf() -> Identifier:
    return Identifier.from_bundle(BUNDLE)


def test_with_runners_gives_the_same_results(idf: Identifier) -> None:
    import onnxruntime as ort

    b = idf.manifest
    src = BUNDLE
    cls = CountingRunner(ort.InferenceSession(str(src / b.classifier.file)))
    assert b.detector is not None
    det = CountingRunner(ort.InferenceSession(str(src / b.detector.file)))
    twin = idf.with_runners(classifier=cls, detector=det)
    a, t = idf.identify(PHOTO), twin.identify(PHOTO)
    assert cls.calls >= 1 and det.calls == 1
    assert a.model_dump(exclude={"timings_ms"}) == t.model_dump(exclude={"timings_ms"})
    assert twin.providers == ["CountingRunner"] and idf.providers == ["CPUExecutionProvider"]
    # from_bundle(runners=...) is the same door
    via = Identifier.from_bundle(BUNDLE, runners=Runners(detector=det))
    assert via.identify(PHOTO).model_dump(exclude={"timings_ms"}) == a.model_dump(
        exclude={"timings_ms"}
    )


def test_detect_returns_detections(idf: Identifier) -> None:
    det = idf.detect(load_image(PHOTO))
    assert isinstance(det, Detections)
    boxes, scores = det  # still unpacks like the old tuple
    assert boxes.shape == (len(scores), 4) and boxes.dtype == np.float32
    # The same boxes identify() crops in combo mode (whatever the shipped bundle finds),
    # plus, with a second detector tier, tentative boxes it reports only when named.
    res = idf.identify(load_image(PHOTO), mode="combo")
    assert len(scores) > 0
    got = sorted(tuple(round(float(v), 1) for v in b) for b in boxes)
    reported = {tuple(round(v, 1) for v in p.bbox.as_tuple()): p for p in res.pills if p.bbox}
    assert set(got) <= set(reported)
    th = idf.manifest.thresholds
    for box, pill in reported.items():
        if box in got:
            continue
        assert th.detector_confidence_named is not None, "a box detect() did not return"
        assert pill.status == "identified"
        assert pill.detection_confidence is not None
        assert th.detector_confidence_named <= pill.detection_confidence < th.detector_confidence


def test_with_runners_refuses_a_detector_for_a_bundle_without_one(tmp_path: Path) -> None:
    single = Identifier.from_bundle(make_bundle(tmp_path, detector=False))
    with pytest.raises(InvalidArgumentError):
        single.with_runners(detector=CountingRunner(None))
