"""Calibration units: temperature, unknown threshold, detector threshold/AP, matching, ECE."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pillsnap_sdk.postprocess import calibrated_softmax
from pillsnap_train.calibrate import (
    DetectorThreshold,
    choose_detector_threshold,
    choose_unknown_threshold,
    expected_calibration_error,
    fit_temperature,
    match_detections,
)

F32 = npt.NDArray[np.float32]


def _sample_labels(logits: F32, t: float, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Labels drawn from softmax(logits / t): ``t`` is then the true temperature."""
    p = calibrated_softmax(logits, t).astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random((len(p), 1))
    labels: npt.NDArray[np.int64] = np.minimum(
        (p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1
    ).astype(np.int64)
    return labels


# --------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5, 6.0])
def test_fit_temperature_recovers_a_known_temperature(t_true: float) -> None:
    rng = np.random.default_rng(int(t_true * 10))
    logits = (rng.normal(size=(8000, 6)) * 4.0).astype(np.float32)
    labels = _sample_labels(logits, t_true, rng)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(t_true, rel=0.08)


def test_fit_temperature_minimises_nll_and_handles_no_data() -> None:
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(2000, 4)) * 3.0).astype(np.float32)
    labels = _sample_labels(logits, 2.0, rng)
    t = fit_temperature(logits, labels)

    def nll(temp: float) -> float:
        p = calibrated_softmax(logits, temp)
        return float(-np.log(p[np.arange(len(labels)), labels]).mean())

    assert nll(t) <= min(nll(t * 0.9), nll(t * 1.1))
    assert fit_temperature(np.zeros((0, 4), np.float32), np.zeros(0, np.int64)) == 1.0


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(2)
    logits = (rng.normal(size=(6000, 5)) * 3.0).astype(np.float32)
    labels = _sample_labels(logits, 3.0, rng)  # the model is 3x overconfident
    t = fit_temperature(logits, labels)
    before = expected_calibration_error(calibrated_softmax(logits, 1.0), labels)
    after = expected_calibration_error(calibrated_softmax(logits, t), labels)
    assert before > 0.1
    assert after < 0.03


# --------------------------------------------------------------------------- ECE


def test_ece_zero_for_confident_correct_and_large_for_overconfident_wrong() -> None:
    labels = np.array([0, 1, 2, 1], np.int64)
    assert expected_calibration_error(np.eye(3, dtype=np.float32)[labels], labels) == 0.0
    # Always 99 % sure, right half the time: ECE = |0.99 - 0.5|.
    probs = np.tile(np.array([[0.99, 0.01]], np.float32), (1000, 1))
    half = np.arange(1000, dtype=np.int64) % 2
    assert expected_calibration_error(probs, half) == pytest.approx(0.49, abs=1e-6)


def test_ece_small_when_confidence_is_the_hit_rate() -> None:
    rng = np.random.default_rng(3)
    n = 40000
    conf = rng.uniform(0.5, 1.0, n)
    correct = rng.random(n) < conf
    probs = np.stack([conf, 1 - conf], axis=1).astype(np.float32)
    labels = np.where(correct, 0, 1).astype(np.int64)
    assert expected_calibration_error(probs, labels) < 0.015


# --------------------------------------------------------------------------- unknown threshold


def _probs(draw_conf: F32, n_classes: int = 3) -> F32:
    """Rows whose max is ``draw_conf`` (class 0), the rest spread evenly."""
    rest = (1 - draw_conf) / (n_classes - 1)
    p = np.repeat(rest[:, None], n_classes, axis=1)
    p[:, 0] = draw_conf
    return p.astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(
    conf=arrays(np.float64, st.integers(1, 60), elements=st.floats(0.34, 1.0)),
    target=st.floats(0.05, 1.0),
    wrong=st.integers(0, 5),
)
def test_unknown_threshold_accepts_the_target_share(conf: F32, target: float, wrong: int) -> None:
    probs = _probs(conf.astype(np.float32))
    labels = np.zeros(len(conf), np.int64)
    labels[: min(wrong, len(labels))] = 1  # a few known pills the model gets wrong
    res = choose_unknown_threshold(probs, labels, target_accept=target)
    kept = probs.max(axis=1) >= res.threshold
    assert 0.0 <= res.threshold <= 0.999
    assert res.known_accept_rate == pytest.approx(kept.mean())
    # Discreteness: with n pills the accepted share can miss the target by < 1/n.
    assert res.known_accept_rate > target - 1.0 / len(conf) - 1e-9
    expected_acc = (probs.argmax(1)[kept] == labels[kept]).mean() if kept.any() else 0.0
    assert res.accepted_accuracy == pytest.approx(expected_acc)
    assert res.n_known == len(conf) and res.unknown_reject_rate is None and res.n_unknown == 0
    # Asking to accept more never raises the threshold.
    looser = choose_unknown_threshold(probs, labels, target_accept=min(1.0, target + 0.1))
    assert looser.threshold <= res.threshold


def test_unknown_threshold_reports_rejection_of_unknown_pills() -> None:
    known = _probs(np.linspace(0.6, 1.0, 100).astype(np.float32))
    labels = np.zeros(100, np.int64)
    unknown = _probs(np.linspace(0.34, 0.8, 50).astype(np.float32))
    res = choose_unknown_threshold(known, labels, unknown, target_accept=0.9)
    assert res.known_accept_rate >= 0.9
    assert res.n_unknown == 50
    expected = (unknown.max(axis=1) < res.threshold).mean()
    assert res.unknown_reject_rate == pytest.approx(expected)
    assert res.unknown_reject_rate is not None and 0.0 < res.unknown_reject_rate < 1.0
    empty = choose_unknown_threshold(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    assert empty.threshold == 0.5 and empty.n_known == 0


# --------------------------------------------------------------------------- matching


def test_match_detections_is_greedy_by_score_and_one_to_one() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    pred = np.array(
        [
            [0, 0, 10, 10.5],  # duplicate of truth 0, lower score
            [0, 0, 10, 10],  # truth 0, best score
            [20, 20, 30, 30],  # truth 1
            [21, 21, 40, 40],  # overlaps truth 1 weakly (IoU < 0.5)
        ],
        np.float32,
    )
    scores = np.array([0.6, 0.9, 0.8, 0.95], np.float32)
    tp = match_detections(pred, scores, truth)
    assert tp.tolist() == [False, True, True, False]
    assert match_detections(pred, scores, truth[:0]).tolist() == [False] * 4
    assert match_detections(pred[:0], scores[:0], truth).tolist() == []
    # A stricter IoU threshold turns a near miss into a false positive.
    near = np.array([[0, 0, 10, 12]], np.float32)
    assert match_detections(near, np.array([0.5], np.float32), truth, 0.5).tolist() == [True]
    assert match_detections(near, np.array([0.5], np.float32), truth, 0.9).tolist() == [False]


# --------------------------------------------------------------------------- detector threshold


def test_detector_threshold_perfect_predictions_give_ap_one() -> None:
    rng = np.random.default_rng(4)
    per_image = []
    for _ in range(5):
        xy = rng.uniform(0, 200, size=(3, 2)).astype(np.float32) + np.arange(3)[:, None] * 300
        truth = np.concatenate([xy, xy + 40], axis=1).astype(np.float32)
        scores = rng.uniform(0.5, 1.0, 3).astype(np.float32)
        # Plus low-scored false positives far away: ranked last, they cannot hurt AP.
        fp = np.array([[2000, 2000, 2040, 2040]], np.float32)
        per_image.append(
            (
                np.concatenate([truth, fp]),
                np.concatenate([scores, np.array([0.1], np.float32)]),
                truth,
            )
        )
    res = choose_detector_threshold(per_image)
    assert res.ap50 == pytest.approx(1.0)
    assert (res.f1, res.precision, res.recall) == pytest.approx((1.0, 1.0, 1.0))
    lowest_tp = min(float(s[:3].min()) for _, s, _ in per_image)
    assert 0.1 < res.threshold <= lowest_tp  # keeps every TP, drops the false positives


def test_detector_threshold_f1_and_ap_bookkeeping() -> None:
    """Hand-checked: 3 truths; ranked TP, FP, TP, FP; one truth never found.

    cut   tp  prec  rec   F1
    0.9   1   1     1/3   0.5
    0.8   1   1/2   1/3   0.4
    0.7   2   2/3   2/3   2/3   <- best
    0.6   2   1/2   2/3   0.571
    AP (all-point) = 1/3 * 1 + 1/3 * 2/3 = 5/9
    """
    t = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    img1 = (
        np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float32),
        np.array([0.9, 0.8], np.float32),
        t[:2],
    )
    img2 = (
        np.array([[40, 0, 50, 10], [200, 0, 210, 10]], np.float32),
        np.array([0.7, 0.6], np.float32),
        t[2:],
    )
    res = choose_detector_threshold([img1, img2])
    assert 0.6 < res.threshold <= 0.7
    assert res.precision == pytest.approx(2 / 3)
    assert res.recall == pytest.approx(2 / 3)
    assert res.f1 == pytest.approx(2 / 3)
    assert res.ap50 == pytest.approx(5 / 9)


def _knife_edge_case() -> list[tuple[F32, F32, F32]]:
    t = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    img1 = (
        np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float32),
        np.array([0.9, 0.8], np.float32),
        t[:2],
    )
    img2 = (
        np.array([[40, 0, 50, 10], [200, 0, 210, 10]], np.float32),
        np.array([0.7, 0.6], np.float32),
        t[2:],
    )
    return [img1, img2]


def test_detector_threshold_does_not_sit_on_a_validation_score() -> None:
    """The threshold is used on the same val photos by the parity gates: a box scored exactly
    at the threshold is kept by one engine and dropped by the other (1e-7 apart). Any value
    strictly between the best cut (0.7) and the next score (0.6) gives the same F1."""
    res = choose_detector_threshold(_knife_edge_case())
    best_cut, next_score = float(np.float32(0.7)), float(np.float32(0.6))
    assert next_score < res.threshold < best_cut


def test_detector_without_any_true_positive_never_fires() -> None:
    """An untrained detector (every box wrong) must not get a threshold at its top score."""
    truth = np.array([[0, 0, 10, 10]], np.float32)
    pred = np.array([[50, 50, 60, 60], [70, 70, 80, 80]], np.float32)
    scores = np.array([0.0124, 0.0123], np.float32)
    res = choose_detector_threshold([(pred, scores, truth)])
    assert res.f1 == 0.0 and res.ap50 == 0.0
    assert res.threshold > float(scores.max())


def test_detector_threshold_without_truth_or_predictions() -> None:
    empty = np.zeros((0, 4), np.float32)
    none = np.zeros(0, np.float32)
    assert choose_detector_threshold([]) == DetectorThreshold(0.25, 0.0, 0.0, 0.0, 0.0)
    assert choose_detector_threshold([(empty, none, empty)]).ap50 == 0.0
    truth = np.array([[0, 0, 1, 1]], np.float32)
    missed = choose_detector_threshold([(empty, none, truth)])
    assert missed.recall == 0.0 and missed.ap50 == 0.0


def test_detector_threshold_recall_weight_trades_false_boxes_for_recall() -> None:
    """Two truths; ranked TP 0.9, FP 0.8, FP 0.7, TP 0.6.

    cut   prec  rec   F1     F2 = 5PR / (4P + R)
    0.9   1     1/2   0.667  0.556
    0.6   1/2   1     0.667  0.833   <- F2's choice (F1 keeps the first of a tie)
    """
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    pred = np.array(
        [[0, 0, 10, 10], [100, 0, 110, 10], [200, 0, 210, 10], [20, 0, 30, 10]], np.float32
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    f1 = choose_detector_threshold([(pred, scores, truth)])
    f2 = choose_detector_threshold([(pred, scores, truth)], recall_weight=2.0)
    assert 0.8 < f1.threshold < 0.9 and f1.recall == pytest.approx(0.5)
    assert 0.0 < f2.threshold < 0.6 and f2.recall == pytest.approx(1.0)
    assert f2.f1 == pytest.approx(5 / 6)  # the F-beta that was maximised
    assert f2.ap50 == f1.ap50  # AP does not depend on the cut
    with pytest.raises(ValueError, match="recall_weight"):
        choose_detector_threshold([(pred, scores, truth)], recall_weight=0.0)


def test_detector_recall_weight_config_keeps_old_config_hashes() -> None:
    from pillsnap_train.config import CalibrationConfig

    old = CalibrationConfig()
    assert "detector_recall_weight" not in old.model_dump_json()  # same hash as <= 2.1.0
    assert CalibrationConfig(detector_recall_weight=2).model_dump()["detector_recall_weight"] == 2
    with pytest.raises(ValueError):
        CalibrationConfig(detector_recall_weight=0)
