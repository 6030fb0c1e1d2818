"""``is_identified``: the SDK's two-signal decision, shared with the calibration."""

from __future__ import annotations

import numpy as np

from pillsnap_sdk.postprocess import is_identified


def test_threshold_and_margin_must_both_hold() -> None:
    p = np.array(
        [
            [0.90, 0.05, 0.05],  # clear
            [0.55, 0.44, 0.01],  # high enough, but a look-alike is close
            [0.40, 0.30, 0.30],  # too low
        ],
        np.float32,
    )
    assert is_identified(p, 0.5, 0.0).tolist() == [True, True, False]
    assert is_identified(p, 0.5, 0.2).tolist() == [True, False, False]
    assert is_identified(p, 0.95, 0.0).tolist() == [False, False, False]
    # Order of columns does not matter: top-1 and top-2 are found wherever they are.
    assert is_identified(p[:, ::-1].copy(), 0.5, 0.2).tolist() == [True, False, False]


def test_degenerate_shapes() -> None:
    assert is_identified(np.zeros((0, 3), np.float32), 0.5, 0.1).shape == (0,)
    one_class = np.array([[1.0], [0.3]], np.float32)
    assert is_identified(one_class, 0.5, 0.5).tolist() == [True, False]
