"""Outlier exposure: pill-free crops, their loss, and their place in the config.

The negatives must never show a labelled pill (else the classifier learns to refuse real
pills), must be reproducible from the seed, and their loss must pull the classifier toward
"no idea" on them without touching how pills are scored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pillsnap_train.classifier.negatives import NegativeSampling, sample_negative_boxes

Box = tuple[float, float, float, float]


def _grown(box: Box, margin: float) -> Box:
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return x1 - mx, y1 - my, x2 + mx, y2 + my


def _share_of_pill(crop: Box, pill: Box) -> float:
    iw = max(0.0, min(crop[2], pill[2]) - max(crop[0], pill[0]))
    ih = max(0.0, min(crop[3], pill[3]) - max(crop[1], pill[1]))
    return iw * ih / ((pill[2] - pill[0]) * (pill[3] - pill[1]))


PHOTOS = [
    ("a.jpg", 640, 480, [(100.0, 100.0, 160.0, 150.0), (300.0, 200.0, 350.0, 260.0)]),
    ("b.jpg", 480, 640, [(200.0, 300.0, 280.0, 380.0)]),
    ("c.jpg", 800, 600, [(10.0, 10.0, 70.0, 70.0), (500.0, 400.0, 560.0, 470.0)]),
]


def test_negatives_show_no_pill_and_stay_in_the_photo() -> None:
    margin = 0.15
    boxes = sample_negative_boxes(PHOTOS, 120, seed=3, margin=margin)
    assert len(boxes) == 120
    sizes = {p: (w, h, pills) for p, w, h, pills in PHOTOS}
    limit = NegativeSampling.max_pill_fraction
    for path, box in boxes:
        w, h, pills = sizes[path]
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
        for pill in pills:
            assert _share_of_pill(_grown(box, margin), pill) <= limit + 1e-9
    assert {p for p, _ in boxes} == {"a.jpg", "b.jpg", "c.jpg"}  # every photo contributes


def test_negatives_are_seeded() -> None:
    one = sample_negative_boxes(PHOTOS, 30, seed=1, margin=0.15)
    assert one == sample_negative_boxes(PHOTOS, 30, seed=1, margin=0.15)
    assert one != sample_negative_boxes(PHOTOS, 30, seed=2, margin=0.15)


def test_most_negatives_are_near_a_pill() -> None:
    """Near pills is where the detector's false boxes are (fingertips, creases)."""
    boxes = sample_negative_boxes(PHOTOS, 300, seed=0, margin=0.15)
    pills = {p: ps for p, _, _, ps in PHOTOS}

    def near(path: str, b: Box) -> bool:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        return any(
            math.hypot(cx - (p[0] + p[2]) / 2, cy - (p[1] + p[3]) / 2)
            <= 2.6 * max(p[2] - p[0], p[3] - p[1])
            for p in pills[path]
        )

    share = sum(near(p, b) for p, b in boxes) / len(boxes)
    assert share >= NegativeSampling.near_pill - 0.1


def test_photos_without_room_give_nothing() -> None:
    full = [("pile.jpg", 100, 100, [(0.0, 0.0, 100.0, 100.0)])]
    assert sample_negative_boxes(full, 10, seed=0, margin=0.15) == []
    assert sample_negative_boxes([], 10, seed=0, margin=0.15) == []
    assert sample_negative_boxes(PHOTOS, 0, seed=0, margin=0.15) == []
    no_pills = [("empty.jpg", 100, 100, [])]  # no pill size to copy: skipped
    assert sample_negative_boxes(no_pills, 5, seed=0, margin=0.15) == []


torch = pytest.importorskip("torch")

from pillsnap_train.classifier.train import ClassifierConfig, training_loss  # noqa: E402


def test_loss_of_negatives_is_cross_entropy_to_uniform() -> None:
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    logits = torch.zeros(4, 17)
    y = torch.full((4,), -1)
    # uniform predictions: -mean log p = ln 17, times the weight
    assert float(training_loss(logits, y, crit, 0.5)) == pytest.approx(0.5 * math.log(17))
    peaked = torch.zeros(4, 17)
    peaked[:, 3] = 8.0  # a confident name on a pill-free crop costs more
    assert float(training_loss(peaked, y, crit, 0.5)) > 0.5 * math.log(17) + 1.0


def test_loss_of_pills_alone_is_unchanged() -> None:
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    assert float(training_loss(logits, y, crit, 0.5)) == pytest.approx(float(crit(logits, y)))


def test_mixed_batch_adds_both_means_and_pulls_negatives_to_uniform() -> None:
    crit = torch.nn.CrossEntropyLoss()
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = torch.tensor([0, 1, -1, 2, -1, -1, 3, 4])
    pos, neg = y >= 0, y < 0
    want = crit(logits[pos], y[pos]) - 2.0 * logits[neg].log_softmax(1).mean(1).mean()
    got = training_loss(logits, y, crit, 2.0)
    assert float(got.detach()) == pytest.approx(float(want.detach()))
    got.backward()
    assert logits.grad is not None
    # the gradient on a negative's logits is weight/n_neg * (softmax - 1/C): descending it
    # lowers the top logit and raises the bottom one
    g = logits.grad[neg]
    top, bottom = logits[neg].argmax(1), logits[neg].argmin(1)
    rows = torch.arange(int(neg.sum()))
    assert bool((g[rows, top] > 0).all()) and bool((g[rows, bottom] < 0).all())


def test_negatives_config_keeps_old_config_hashes() -> None:
    dumped = ClassifierConfig().model_dump_json()
    assert "negative" not in dumped  # same hash as <= 2.1.0 work dirs
    on = ClassifierConfig(negatives=0.35, negative_weight=1.0).model_dump()
    assert on["negatives"] == 0.35 and on["negative_weight"] == 1.0
    assert ClassifierConfig.model_validate(on) == ClassifierConfig(
        negatives=0.35, negative_weight=1
    )
    with pytest.raises(ValueError):
        ClassifierConfig(negatives=-0.1)
    with pytest.raises(ValueError):
        ClassifierConfig(negative_weight=0)
    with pytest.raises(ValueError):
        ClassifierConfig(negatves=0.3)  # type: ignore[call-arg]  # typo: refused


def _record(path: str, split: str, box: Box, code: str, source: str) -> Any:
    from pillsnap_train.data.records import BoxRecord

    return BoxRecord(path, path, split, "single", 640, 480, *box, code, code, source)


def test_release_trains_on_negatives_of_the_named_sources_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``classifier.negatives`` crops per pill crop, labelled -1, off by default; drawn
    from the named photos only: detector-only sources (licensed for the detector) never
    reach the classifier, not even as pill-free crops."""
    import pillsnap_train.classifier.train as clf_train
    import pillsnap_train.release.train as rel_train
    from pillsnap_train.config import load_config
    from pillsnap_train.release.data import ReleaseData

    from .conftest import make_sources, release_config, write_config

    aihub, yolo = make_sources(tmp_path)
    raw = release_config(tmp_path, aihub=aihub, yolo=yolo)
    raw["classifier"]["negatives"] = 0.5
    data = ReleaseData(load_config(write_config(tmp_path / "release.yaml", raw)))
    code = "K-000001"
    named = [_record(f"/n{i}.jpg", "train", (100, 100, 160, 160), code, "s") for i in range(6)]
    other = [_record(f"/o{i}.jpg", "train", (300, 200, 360, 260), "pill", "x") for i in range(6)]
    val = [_record("/v.jpg", "val", (100, 100, 160, 160), code, "s")]
    monkeypatch.setattr(data, "records", lambda: named + val)
    monkeypatch.setattr(data, "detector_extra", lambda: other)
    seen: dict[str, Any] = {}

    def fake_train(train: Any, val: Any, n: int, out: Path, cfg: Any) -> Any:
        seen["train"] = list(train)
        return clf_train.TrainResult(out / "best.pt", out / "last.pt", 0.9)

    monkeypatch.setattr(clf_train, "train_classifier", fake_train)
    result = rel_train.train_classifier(data)
    negatives = [s for s in seen["train"] if s.label == -1]
    assert result.negatives == len(negatives)
    pills = [s for s in seen["train"] if s.label >= 0 and s.box is not None]
    assert len(pills) == 6 and len(negatives) == 3  # round(0.5 * 6)
    assert all(s.box is not None for s in negatives)
    more = data.negative_samples("train", 40)
    assert len(more) == 40 and {s.image_path[1] for s in more} == {"n"}  # never "/o..."
    assert data.negative_samples("val", 5)[0].image_path == "/v.jpg"

    data.cfg.classifier.negatives = 0.0
    rel_train.train_classifier(data)
    assert all(s.label >= 0 for s in seen["train"])
