"""Would a feature-space distance refuse pills the classifier has never seen better than its
calibrated probability does? (Measurement only; the SDK does not use it yet.)

Why: the strongest classifier names pills of other drugs at 0.98-1.00 probability
(``scripts/foreign_pills.py``), so no probability threshold can refuse them. Out-of-
distribution scores on the network's pooled features (Mahalanobis distance to the nearest
class mean, Lee et al. 2018; cosine distance to the nearest training crop, Sun et al.
2022) need no examples of unknown pills: they are fitted on the training crops only.
Compared at *equal acceptance of known crops*, so no signal looks better by refusing more
of everything.

    # the release's classifier, unknowns = pills of other drugs (detector-only val photos)
    python scripts/familiarity.py --config configs/pushin-pill-edge.yaml \\
        --checkpoint artifacts/pushin-pill-edge/classifier/best.pt
    # the open-set experiment, unknowns = the held-out drugs
    python scripts/familiarity.py --config configs/experiments/open-set-3-soup.yaml \\
        --checkpoint artifacts/pushin-pill-open-set-3-soup/classifier/best.pt --open-set
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.image import load_image
from pillsnap_sdk.postprocess import calibrated_softmax
from pillsnap_sdk.preprocessing import crop_with_margin, preprocess
from pillsnap_train.calibrate import fit_temperature
from pillsnap_train.classifier.familiarity import fit_familiarity, pooled_features
from pillsnap_train.config import load_config
from pillsnap_train.release.crops import classifier_spec, crop_batches, shifted_crop_batches
from pillsnap_train.release.data import ReleaseData

F = npt.NDArray[np.float32]
ACCEPT = (0.95, 0.9, 0.8, 0.7)


def features(model: Any, x: F) -> tuple[F, F]:
    """Pooled features and logits of ``x`` (NCHW, preprocessed), in batches of 64."""
    import torch

    fs, ls = [], []
    with torch.no_grad():
        for i in range(0, len(x), 64):
            f = pooled_features(model, torch.from_numpy(x[i : i + 64]))
            fs.append(f.numpy())
            ls.append(model.get_classifier()(f).numpy())
    return np.concatenate(fs), np.concatenate(ls)


def mahalanobis(train: F, labels: npt.NDArray[np.int64]) -> Any:
    """A scorer: minus the smallest class-mean Mahalanobis distance, fitted as the
    release's familiarity gate is (shared covariance shrunk 0.5; the cut is not used)."""
    stats = fit_familiarity(train, labels, train[:1], keep=1.0)
    return lambda f: -stats.distances(f)


def nearest(train: F) -> Any:
    """A scorer: cosine similarity to the nearest training crop."""
    a = train / np.linalg.norm(train, axis=1, keepdims=True)

    def score(f: F) -> F:
        b = f / np.linalg.norm(f, axis=1, keepdims=True)
        return np.asarray((b @ a.T).max(1), np.float32)

    return score


def foreign_crops(data: ReleaseData) -> F:
    """Crops of the detector-only validation photos' pills (other drugs), as the release
    cuts the classifier's crops."""
    spec, margin = classifier_spec(data.cfg), data.cfg.classifier.crop_margin
    photos: dict[str, list[tuple[float, float, float, float]]] = collections.defaultdict(list)
    for r in data.detector_extra():
        if r.split == "val":
            photos[r.image_path].append((r.x1, r.y1, r.x2, r.y2))
    xs = []
    for path, boxes in sorted(photos.items()):
        rgb = load_image(path)
        xs += [preprocess(crop_with_margin(rgb, b, margin), spec)[0] for b in boxes]
    return np.stack(xs)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from pillsnap_train.classifier.train import load_trained

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--checkpoint", required=True, help="a classifier best.pt of that config")
    ap.add_argument("--open-set", action="store_true", help="unknowns: the held-out classes")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = ReleaseData(load_config(args.config))
    model, _ = load_trained(args.checkpoint)
    model.eval()
    x_tr, y_tr = crop_batches(data, "train")
    f_tr, _ = features(model, x_tr)
    x_va, y_va = crop_batches(data, "val")
    if args.open_set:  # photos with a held-out drug: its crops unknown, the rest known
        x_h, y_h = crop_batches(data, "holdout", holdout=True)
        x_known, y_known = (
            np.concatenate([x_va, x_h[y_h >= 0]]),
            np.concatenate([y_va, y_h[y_h >= 0]]),
        )
        x_unk = x_h[y_h < 0]
    else:
        x_sh, y_sh = shifted_crop_batches(data, "val")
        x_known, y_known = np.concatenate([x_va, x_sh]), np.concatenate([y_va, y_sh])
        x_unk = foreign_crops(data)
    f_k, l_k = features(model, x_known)
    f_u, l_u = features(model, x_unk)
    temperature = fit_temperature(l_k, y_known)
    maha, near = mahalanobis(f_tr, y_tr), nearest(f_tr)
    k_prob = calibrated_softmax(l_k, temperature).max(1)
    u_prob = calibrated_softmax(l_u, temperature).max(1)
    scored = {
        "max probability": (k_prob, u_prob),
        "Mahalanobis": (maha(f_k), maha(f_u)),
        "nearest (cosine)": (near(f_k), near(f_u)),
    }
    top1 = float((l_k.argmax(1) == y_known).mean())
    print(f"known crops {len(y_known)} (top-1 {top1:.3f}), unknown crops {len(x_unk)}")
    print("| known accepted | " + " | ".join(f"{n}: unknown refused" for n in scored) + " |")
    for acc in ACCEPT:
        cells = []
        for known, unknown in scored.values():
            cut = np.quantile(known, 1 - acc)
            cells.append(f"{100 * (unknown < cut).mean():.0f} %")
        print(f"| {100 * acc:.0f} % | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
