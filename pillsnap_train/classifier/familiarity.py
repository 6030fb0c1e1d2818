"""A familiarity gate inside the classifier: crops far from every drug it was trained on come
out with flat logits, so the bundle's abstention rule calls them "unknown".

Why: the classifier names pills of drugs it has never seen at 0.98-1.00 probability, so no
probability threshold can refuse them, while their pooled features lie far from the
training crops'. Measured (docs/accuracy-2.0.md, "Bundle 2.5.0", ``scripts/familiarity.py``):
at equal acceptance of known validation crops, the Mahalanobis distance to the nearest
class mean (shared covariance, shrunk; Lee et al. 2018) refused 2-4x more crops of unseen
drugs than the calibrated probability did.

How: fitted on the training crops' pooled features (class means, shared covariance shrunk
toward its average variance, its inverse factored as ``L L^T``), the cut chosen on the
validation crops (clean and camera-shifted) so that a share ``keep`` of them pass
untouched. The gate multiplies the logits by ``clip((hi - d) / (hi - lo), 0, 1)`` (``d`` the
smallest class distance, ``lo`` the cut, ``hi = lo * (1 + ramp)``). It is part of the
exported ONNX graph (nodes named ``/gate/...``, kept in float by the int8 build), so the SDK
and every bundle reader run it without knowing it exists, and the temperature and
thresholds are calibrated on the gated logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..export.int8 import GATE_PREFIX

__all__ = [
    "GATE_PREFIX",
    "FamiliarClassifier",
    "FamiliarityStats",
    "fit_familiarity",
    "load_familiarity",
    "pooled_features",
]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FamiliarityStats:
    """Class means and the factor ``L`` of the shrunk inverse covariance (``P = L L^T``),
    in the classifier's pooled-feature space, plus the cut ``lo`` and ramp end ``hi``."""

    means: F32  # [C, D]
    factor: F32  # [D, D]
    lo: float
    hi: float
    keep: float

    def distances(self, feats: F32) -> F32:
        """Smallest squared Mahalanobis distance of each row of ``feats`` to a class mean."""
        z = feats.astype(np.float64) @ self.factor
        m = self.means.astype(np.float64) @ self.factor
        d = (z * z).sum(1, keepdims=True) - 2 * z @ m.T + (m * m).sum(1)[None]
        return np.asarray(d.min(1), np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, means=self.means, factor=self.factor, cut=[self.lo, self.hi, self.keep])


def load_familiarity(path: Path) -> FamiliarityStats:
    with np.load(path, allow_pickle=False) as z:
        lo, hi, keep = (float(v) for v in z["cut"])
        return FamiliarityStats(z["means"], z["factor"], lo, hi, keep)


def fit_familiarity(
    train: F32,
    labels: npt.NDArray[np.int64],
    known: F32,
    *,
    keep: float,
    shrink: float = 0.5,
    ramp: float = 0.1,
) -> FamiliarityStats:
    """Fit on ``train`` features (labels >= 0) and cut where a share ``keep`` of ``known``
    (validation) features pass untouched. Raises ValueError without enough data."""
    if not 0.0 < keep <= 1.0 or not 0.0 <= shrink < 1.0 or ramp <= 0.0:
        raise ValueError("familiarity needs 0 < keep <= 1, 0 <= shrink < 1 and ramp > 0")
    classes = sorted({int(c) for c in labels if c >= 0})
    if len(classes) < 2 or len(known) == 0:
        raise ValueError("familiarity needs training crops of two classes and validation crops")
    x = train.astype(np.float64)
    means = np.stack([x[labels == c].mean(0) for c in classes])
    pos = labels >= 0
    resid = x[pos] - means[np.searchsorted(classes, labels[pos])]
    cov = resid.T @ resid / max(len(resid), 1)
    cov = (1 - shrink) * cov + shrink * (np.trace(cov) / len(cov) + 1e-6) * np.eye(len(cov))
    factor = np.linalg.cholesky(np.linalg.inv(cov))
    stats = FamiliarityStats(means.astype(np.float32), factor.astype(np.float32), 0.0, 1.0, keep)
    lo = float(np.quantile(stats.distances(known), keep))
    return FamiliarityStats(stats.means, stats.factor, lo, lo * (1 + ramp), keep)


class _Gate(nn.Module):
    factor: torch.Tensor
    proj_means_t: torch.Tensor
    mean_norms: torch.Tensor

    def __init__(self, stats: FamiliarityStats) -> None:
        super().__init__()
        self.register_buffer("factor", torch.from_numpy(stats.factor))
        m = stats.means @ stats.factor
        self.register_buffer("proj_means_t", torch.from_numpy(np.ascontiguousarray(m.T)))
        self.register_buffer("mean_norms", torch.from_numpy((m * m).sum(1)))
        self.lo, self.hi = stats.lo, stats.hi

    def forward(self, feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        z = feats @ self.factor
        d = (z * z).sum(1, keepdim=True) - 2 * (z @ self.proj_means_t) + self.mean_norms
        nearest = d.min(1, keepdim=True).values
        g = torch.clamp((self.hi - nearest) / (self.hi - self.lo), 0.0, 1.0)
        return logits * g


class FamiliarClassifier(nn.Module):
    """A timm classifier whose logits pass through the familiarity gate."""

    def __init__(self, net: nn.Module, stats: FamiliarityStats) -> None:
        super().__init__()
        self.net = net
        self.gate = _Gate(stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = pooled_features(self.net, x)
        logits: torch.Tensor = self.net.get_classifier()(feats)  # type: ignore[operator]
        gated: torch.Tensor = self.gate(feats, logits)
        return gated


def pooled_features(net: Any, x: torch.Tensor) -> torch.Tensor:
    """The features the classifier's last layer reads (timm: ``forward_head(pre_logits)``)."""
    return net.forward_head(net.forward_features(x), pre_logits=True)  # type: ignore[no-any-return]
