"""The familiarity gate (``calibration.familiarity_keep``): fitted on training features, cut
on validation features, folded into the exported classifier and kept in float by the int8
build. A crop far from every trained class must come out with flat logits (the bundle's
abstention rule then says "unknown"); a familiar one must pass untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pillsnap_train.classifier.familiarity import (
    GATE_PREFIX,
    FamiliarClassifier,
    fit_familiarity,
    load_familiarity,
)

D, C = 8, 3


def _clusters(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, C, n)
    centres = np.eye(C, D, dtype=np.float32) * 6.0
    return (centres[labels] + rng.normal(0, 1, (n, D))).astype(np.float32), labels


def test_fit_cuts_at_the_kept_share_and_measures_mahalanobis(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train, labels = _clusters(rng, 600)
    known, _ = _clusters(rng, 400)
    stats = fit_familiarity(train, labels, known, keep=0.9, shrink=0.5, ramp=0.1)
    d_known = stats.distances(known)
    assert np.mean(d_known <= stats.lo) == pytest.approx(0.9, abs=0.01)
    assert stats.hi == pytest.approx(stats.lo * 1.1)
    far = np.full((5, D), 40.0, np.float32)
    assert (stats.distances(far) > stats.hi).all()
    # the factor reproduces the shrunk inverse covariance's distance to the nearest mean
    means = np.stack([train[labels == c].mean(0) for c in range(C)]).astype(np.float64)
    resid = train - means[labels]
    cov = resid.T @ resid / len(resid)
    cov = 0.5 * cov + 0.5 * (np.trace(cov) / D + 1e-6) * np.eye(D)
    prec = np.linalg.inv(cov)
    exact = np.min([np.einsum("ij,jk,ik->i", known - m, prec, known - m) for m in means], axis=0)
    np.testing.assert_allclose(d_known, exact, rtol=1e-4)
    stats.save(tmp_path / "f.npz")
    again = load_familiarity(tmp_path / "f.npz")
    assert (again.lo, again.hi, again.keep) == (stats.lo, stats.hi, 0.9)
    np.testing.assert_array_equal(again.factor, stats.factor)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"keep": 0.0}, "0 < keep"), ({"keep": 0.9, "shrink": 1.0}, "shrink"),
     ({"keep": 0.9, "ramp": 0.0}, "ramp")],
)  # fmt: skip
def test_fit_refuses_bad_settings(kwargs: dict[str, float], message: str) -> None:
    train, labels = _clusters(np.random.default_rng(1), 60)
    with pytest.raises(ValueError, match=message):
        fit_familiarity(train, labels, train, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two classes"):
        fit_familiarity(train, np.zeros(60, np.int64), train, keep=0.9)


class _Net(nn.Module):
    """timm's interface in miniature: forward_features, forward_head(pre_logits),
    get_classifier. Features are the per-channel means of a 1x1 conv of the image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, D, 1)
        self.fc = nn.Linear(D, C)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        f = x.mean((2, 3))
        return f if pre_logits else self.fc(f)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _gated() -> tuple[_Net, FamiliarClassifier, torch.Tensor, torch.Tensor]:
    net = _Net().eval()
    g = torch.Generator().manual_seed(2)
    near = torch.rand(64, 3, 8, 8, generator=g)  # the "training" images
    far = near * 40.0 + 30.0  # features far outside what was fitted
    with torch.no_grad():
        feats = net.forward_head(net.forward_features(near), pre_logits=True).numpy()
    labels = net(near).argmax(1).numpy()
    labels[:C] = np.arange(C)  # every class present
    stats = fit_familiarity(feats, labels, feats, keep=1.0)
    return net, FamiliarClassifier(net, stats).eval(), near, far


def test_gate_keeps_familiar_logits_and_flattens_far_ones() -> None:
    net, gated, near, far = _gated()
    with torch.no_grad():
        # keep=1.0: every fitted crop passes (the farthest sits on the cut: float32 rounding)
        torch.testing.assert_close(gated(near), net(near), atol=1e-3, rtol=1e-3)
        flat = gated(far)
    assert torch.count_nonzero(flat) == 0  # uniform after softmax: "unknown"
    assert torch.count_nonzero(net(far)) > 0


def test_exported_gate_matches_torch_and_int8_keeps_it_in_float(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from pillsnap_train.export.int8 import Int8Options, build_int8
    from pillsnap_train.export.names import CLASSIFIER_INPUT
    from pillsnap_train.export.onnx_export import export_classifier_onnx

    _, gated, near, far = _gated()
    path = export_classifier_onnx(gated, tmp_path / "classifier.onnx", 8)
    gate_nodes = [n.name for n in onnx.load(str(path)).graph.node if n.name.startswith(GATE_PREFIX)]
    assert gate_nodes, "the gate's nodes lost their /gate/ names in the export"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.cat([near[:8], far[:8]]).numpy()
    (onnx_out,) = sess.run(None, {CLASSIFIER_INPUT: x})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, gated(torch.from_numpy(x)).numpy(), atol=1e-4)
    assert not onnx_out[8:].any() and onnx_out[:8].any()

    made = build_int8(
        path, tmp_path / "classifier_int8.onnx", CLASSIFIER_INPUT, near.numpy(),
        Int8Options(keep_float=["head"], calibration_crops=64, batch=16),
    )  # fmt: skip
    assert set(gate_nodes) <= set(made.kept_float)
    q = onnx.load(str(made.path))
    for node in q.graph.node:  # no gate op reads an 8-bit-rounded tensor
        if node.name.startswith(GATE_PREFIX) and node.op_type == "MatMul":
            producers = {o: n for n in q.graph.node for o in n.output}
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear"
                       for i in node.input[1:]), node.name  # fmt: skip
    (int8_out,) = ort.InferenceSession(str(made.path), providers=["CPUExecutionProvider"]).run(
        None, {CLASSIFIER_INPUT: x}
    )
    assert not int8_out[8:].any()  # far crops still flat in the int8 variant
