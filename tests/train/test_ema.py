"""The classifier's EMA weights follow training, not the initial weights.

Bundles <= 2.1.0 updated timm's ModelEmaV3 without the step, which silently turns its
warm-up off: after a short run about half of the exported weights were still the
initialisation. These tests fail on that code.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from pillsnap_train.classifier.train import _make_ema, update_ema  # noqa: E402


def _run(steps: int, decay: float) -> float:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)  # the "initialisation"
    ema = _make_ema(model, decay)
    with torch.no_grad():
        model.weight.fill_(1.0)  # the trained weights
    for step in range(steps):
        update_ema(ema, model, step)
    return float(ema.module.weight.item())


def test_ema_of_a_short_run_is_the_trained_weights() -> None:
    # 370 steps: a 12-epoch run on ~1,000 crops. Without warm-up 0.998 ** 370 = 48 % of the
    # average would still be the initial weights (0.52 here).
    assert _run(370, 0.998) > 0.99


def test_ema_first_update_copies_the_model() -> None:
    assert _run(1, 0.9999) == pytest.approx(1.0)


def test_ema_off_is_none() -> None:
    assert _make_ema(torch.nn.Linear(1, 1), 0.0) is None


def test_without_the_step_half_the_initialisation_stays() -> None:
    """``ema_warmup: false`` (bundles 2.0.0-2.1.0): 0.998 ** 370 = 0.477 of the init."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = _make_ema(model, 0.998)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(370):
        update_ema(ema, model, None)
    assert float(ema.module.weight.item()) == pytest.approx(1 - 0.998**370, rel=1e-4)
