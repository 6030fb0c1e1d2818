"""Calibration: temperature scaling, the unknown threshold, the detector threshold.

All three are chosen on validation data only and written into the bundle's thresholds,
so the confidence a pharmacist sees is a probability that means what it says.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.boxes import box_iou
from pillsnap_sdk.postprocess import calibrated_softmax, is_identified

__all__ = [
    "Abstention",
    "DetectorThreshold",
    "UnknownThreshold",
    "abstention_report",
    "choose_abstention",
    "choose_detector_threshold",
    "choose_unknown_threshold",
    "expected_calibration_error",
    "fit_temperature",
    "match_detections",
    "match_indices",
]

F32 = npt.NDArray[np.float32]


def _nll(logits: F32, labels: npt.NDArray[np.int64], t: float) -> float:
    p = calibrated_softmax(logits, t)
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def fit_temperature(logits: F32, labels: npt.NDArray[np.int64]) -> float:
    """Temperature minimising validation NLL (golden-section search on log T in [0.05, 20])."""
    if len(labels) == 0:
        return 1.0
    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = _nll(logits, labels, float(np.exp(a))), _nll(logits, labels, float(np.exp(b)))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = _nll(logits, labels, float(np.exp(a)))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = _nll(logits, labels, float(np.exp(b)))
    return float(np.exp((lo + hi) / 2))


def expected_calibration_error(probs: F32, labels: npt.NDArray[np.int64], bins: int = 10) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(float(conf[m].mean()) - float(correct[m].mean()))
    return float(ece)


@dataclass(frozen=True)
class UnknownThreshold:
    threshold: float
    known_accept_rate: float  # val pills of known classes kept as identified
    accepted_accuracy: float  # top-1 among those kept
    unknown_reject_rate: float | None  # held-out-class pills turned into "unknown"
    n_known: int
    n_unknown: int


def choose_unknown_threshold(
    known_probs: F32,
    known_labels: npt.NDArray[np.int64],
    unknown_probs: F32 | None = None,
    *,
    target_accept: float = 0.95,
) -> UnknownThreshold:
    """Highest threshold that still accepts ``target_accept`` of known-class val pills.

    Rejecting more would reject unfamiliar pills more often but turn away correct answers;
    the trade-off is reported (known-accept, unknown-reject) rather than hidden.
    """
    conf = known_probs.max(axis=1) if len(known_probs) else np.zeros(0, np.float32)
    thr = float(np.quantile(conf, 1.0 - target_accept)) if len(conf) else 0.5
    thr = float(np.clip(np.floor(thr * 1000) / 1000, 0.0, 0.999))
    kept = conf >= thr
    acc = float((known_probs.argmax(1)[kept] == known_labels[kept]).mean()) if kept.any() else 0.0
    rej = None
    n_unknown = 0
    if unknown_probs is not None and len(unknown_probs):
        n_unknown = len(unknown_probs)
        rej = float((unknown_probs.max(axis=1) < thr).mean())
    return UnknownThreshold(
        thr, float(kept.mean()) if len(conf) else 0.0, acc, rej, len(conf), n_unknown
    )


@dataclass(frozen=True)
class Abstention:
    """The two numbers that decide "identified" vs "unknown", and what they did on val."""

    threshold: float
    margin: float
    known_accept_rate: float  # crops kept as identified
    accepted_accuracy: float  # top-1 among those kept
    wrong_rate: float  # crops named wrongly while kept (confidently wrong), of all crops
    right_rate: float  # crops named rightly while kept, of all crops
    n: int


#: Candidate margins (top-1 minus top-2 probability); 0 is the 1.x single-signal rule.
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6)


def choose_abstention(probs: F32, labels: npt.NDArray[np.int64], *, max_wrong: float) -> Abstention:
    """Threshold and margin that keep confidently-wrong names at or below ``max_wrong`` of
    the crops while keeping the most right names.

    Why two signals: a crop the model splits between two look-alikes (acetaminophen vs
    tylenol) can have a top-1 high enough to pass a threshold while the runner-up is close;
    the margin catches it without raising the threshold for every pill. Why bound the wrong
    rate and not the accept rate (1.x): a pharmacy can live with "ask the pharmacist", not
    with a wrong drug, so the constraint is on what it cannot live with. The decision rule
    is :func:`pillsnap_sdk.postprocess.is_identified`, the SDK's own.
    """
    n = len(labels)
    if n == 0:
        return Abstention(0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    right = probs.argmax(1) == labels
    top = np.sort(probs, axis=1)[:, ::-1]
    top1 = top[:, 0]
    candidates = np.unique(np.floor(np.concatenate([top1, [0.0]]) * 1000) / 1000)
    best: Abstention | None = None
    for margin in MARGINS:
        for thr in candidates:
            kept = is_identified(probs, float(thr), margin)
            wrong = float((kept & ~right).sum()) / n
            if wrong > max_wrong:
                continue
            good = float((kept & right).sum()) / n
            if best is None or good > best.right_rate + 1e-12:
                acc = float(right[kept].mean()) if kept.any() else 0.0
                best = Abstention(float(thr), margin, float(kept.mean()), acc, wrong, good, n)
            break  # thresholds ascend: the first that fits keeps the most at this margin
    if best is None:  # nothing fits: never name a drug (the gate then reports it)
        return Abstention(1.0, 1.0, 0.0, 0.0, 0.0, 0.0, n)
    return best


def abstention_report(
    probs: F32, labels: npt.NDArray[np.int64], threshold: float, margin: float
) -> dict[str, float]:
    """What a threshold/margin pair does on one crop set: kept, right and wrong shares."""
    n = len(labels)
    if n == 0:
        return {"n": 0, "known_accept_rate": 0.0, "right_rate": 0.0, "wrong_rate": 0.0}
    kept = is_identified(probs, threshold, margin)
    right = probs.argmax(1) == labels
    return {
        "n": n,
        "known_accept_rate": float(kept.mean()),
        "right_rate": float((kept & right).mean()),
        "wrong_rate": float((kept & ~right).mean()),
    }


def match_indices(
    pred: F32, scores: F32, truth: F32, iou_threshold: float = 0.5
) -> npt.NDArray[np.intp]:
    """Greedy matching (best score first): the truth index each prediction hits, else -1."""
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(pred, truth)
    used = np.zeros(len(truth), bool)
    match = np.full(len(pred), -1, dtype=np.intp)
    for i in order:
        if len(truth) == 0:
            break
        cand = np.where(~used, iou[i], -1.0)
        j = int(cand.argmax())
        if cand[j] >= iou_threshold:
            used[j] = True
            match[i] = j
    return match


def match_detections(
    pred: F32, scores: F32, truth: F32, iou_threshold: float = 0.5
) -> npt.NDArray[np.bool_]:
    """Greedy matching (best score first): True where a prediction hits an unmatched truth."""
    hit: npt.NDArray[np.bool_] = match_indices(pred, scores, truth, iou_threshold) >= 0
    return hit


@dataclass(frozen=True)
class DetectorThreshold:
    threshold: float
    f1: float
    precision: float
    recall: float
    ap50: float


def choose_detector_threshold(
    per_image: Sequence[tuple[F32, F32, F32]],
    iou_threshold: float = 0.5,
    *,
    recall_weight: float = 1.0,
) -> DetectorThreshold:
    """Confidence threshold maximising F-beta (``beta = recall_weight``; 1: F1) over val
    images; also AP@0.5 (all-point). ``f1`` of the result is that F-beta.

    ``per_image`` holds (pred boxes, scores, true boxes) with predictions made at a low
    threshold so that the sweep sees the whole precision-recall curve. Why a recall
    weight: a pill the detector misses can never be named, while a box on no pill is
    answered "unknown" by the classifier's abstention (pill-free crops are rejected), so
    a pipeline may trade some false boxes for recall.
    """
    if not recall_weight > 0:
        raise ValueError(f"recall_weight must be > 0, got {recall_weight!r}")
    all_scores, all_tp = [], []
    n_truth = 0
    for pred, scores, truth in per_image:
        n_truth += len(truth)
        all_scores.append(scores)
        all_tp.append(match_detections(pred, scores, truth, iou_threshold))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0, np.float32)
    tp = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    if n_truth == 0 or len(scores) == 0:
        return DetectorThreshold(0.25, 0.0, 0.0, 0.0, 0.0)
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    ctp = np.cumsum(tp)
    prec = ctp / np.arange(1, len(tp) + 1)
    rec = ctp / n_truth
    b2 = recall_weight * recall_weight
    f1 = (1 + b2) * prec * rec / np.maximum(b2 * prec + rec, 1e-9)
    # Only cut between distinct scores: a cut inside a run of ties is not realisable.
    last_of_run = np.append(scores[1:] < scores[:-1], True)
    best = int(np.where(last_of_run, f1, -1.0).argmax())
    # AP: area under the monotone precision envelope (VOC all-point).
    envelope = np.maximum.accumulate(prec[::-1])[::-1]
    r = np.concatenate([[0.0], rec])
    ap = float(np.sum((r[1:] - r[:-1]) * envelope))
    if f1[best] <= 0.0:
        # No cut finds a pill: never fire (the SDK then classifies the whole photo).
        return DetectorThreshold(1.0, 0.0, 0.0, 0.0, ap)
    # Midway to the next lower score, never *on* a validation score: a threshold equal to
    # a score flips with 1e-8 engine noise (torch vs onnxruntime) and makes gates flaky.
    lower = float(scores[best + 1]) if best + 1 < len(scores) else 0.0
    threshold = (float(scores[best]) + lower) / 2.0
    return DetectorThreshold(threshold, float(f1[best]), float(prec[best]), float(rec[best]), ap)
