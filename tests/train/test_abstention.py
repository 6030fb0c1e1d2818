"""Choosing the abstention rule: bound confidently-wrong names, keep the most right ones."""

from __future__ import annotations

import numpy as np
import pytest

from pillsnap_sdk.postprocess import is_identified
from pillsnap_train.calibrate import abstention_report, choose_abstention


def _crops(seed: int = 0, n: int = 400, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Mostly confident right answers, some confident errors between look-alike pairs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    probs = np.zeros((n, k), np.float32)
    for i, y in enumerate(labels):
        if i % 10 == 0:  # a look-alike wins narrowly: high top-1, small margin
            probs[i] = 0.02
            probs[i, (y + 1) % k], probs[i, y] = 0.52, 0.42
        else:  # right, sometimes with a low top-1 but the rest spread thin
            top = rng.uniform(0.35, 0.99)
            probs[i] = (1 - top) / (k - 1)
            probs[i, y] = top
    return probs, labels


@pytest.mark.parametrize("max_wrong", [0.0, 0.01, 0.05])
def test_wrong_rate_is_bounded_and_right_names_kept(max_wrong: float) -> None:
    probs, labels = _crops()
    ab = choose_abstention(probs, labels, max_wrong=max_wrong)
    kept = is_identified(probs, ab.threshold, ab.margin)
    wrong = float((kept & (probs.argmax(1) != labels)).mean())
    assert wrong <= max_wrong + 1e-9
    assert ab.wrong_rate == pytest.approx(wrong)
    # The look-alike errors have a small margin: a margin rule keeps nearly all right names
    # (a threshold alone would have to exceed 0.52 / sum and drop many right ones too).
    assert ab.right_rate >= 0.85


def test_margin_is_used_when_it_keeps_more_right_names() -> None:
    probs, labels = _crops()
    ab = choose_abstention(probs, labels, max_wrong=0.0)
    assert ab.margin > 0.0
    only_threshold = [
        float((is_identified(probs, t, 0.0) & (probs.argmax(1) == labels)).mean())
        for t in np.linspace(0, 1, 101)
        if not (is_identified(probs, t, 0.0) & (probs.argmax(1) != labels)).any()
    ]
    assert ab.right_rate > max(only_threshold)


def test_report_and_degenerate_inputs() -> None:
    probs, labels = _crops(n=50)
    rep = abstention_report(probs, labels, 0.5, 0.2)
    assert rep["n"] == 50 and rep["right_rate"] + rep["wrong_rate"] == pytest.approx(
        rep["known_accept_rate"]
    )
    empty = choose_abstention(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), max_wrong=0.0)
    assert empty.n == 0
    # Every answer wrong: nothing can be named at a 0 % bound.
    wrong = np.full((3, 3), 0.05, np.float32) + 0.85 * np.eye(3, dtype=np.float32)[[1, 2, 0]]
    never = choose_abstention(wrong, np.array([0, 1, 2]), max_wrong=0.0)
    assert not is_identified(wrong, never.threshold, never.margin).any()
