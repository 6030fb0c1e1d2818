"""Numpy post-processing: calibrated softmax, detector decoding (NMS from :mod:`.boxes`).

Kept free of onnxruntime so it can be property-tested on its own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .boxes import nms

__all__ = ["calibrated_softmax", "decode_yolo", "is_identified"]

F32 = npt.NDArray[np.float32]


def calibrated_softmax(logits: F32, temperature: float) -> F32:
    """``softmax(logits / T)`` row-wise, numerically stable, returned as float32.

    Computed in float64: finite float32 logits near 3e38 divided by a temperature below 1
    overflowed float32 to inf and came out NaN (a tampered model); in float64 any finite
    float32 logit over any allowed temperature (>= 0.01) stays finite.
    """
    z = np.asarray(logits, np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32)


def is_identified(probs: F32, threshold: float, margin: float) -> npt.NDArray[np.bool_]:
    """Which rows of calibrated ``probs`` (``NxC``) are confident enough to name a drug.

    Both signals must agree: the top probability reaches ``threshold`` and beats the
    runner-up by ``margin``. One function serves the SDK's decision and the calibration
    that chooses the two numbers, so what was measured is what ships.
    """
    p = np.asarray(probs, np.float32)
    if p.ndim != 2 or p.shape[0] == 0:
        return np.zeros(p.shape[0] if p.ndim else 0, np.bool_)
    if p.shape[1] == 1:
        top1, top2 = p[:, 0], np.zeros(p.shape[0], np.float32)
    else:
        part = -np.partition(-p, 1, axis=1)
        top1, top2 = part[:, 0], part[:, 1]
    return (top1 >= np.float32(threshold)) & ((top1 - top2) >= np.float32(margin))


def decode_yolo(
    output: F32, conf_threshold: float, iou_threshold: float, max_detections: int
) -> tuple[F32, F32]:
    """Decode an Ultralytics head ``[1, 4+C, A]`` into xyxy boxes and scores (class-agnostic).

    Every class counts as "pill": a detector trained with several classes still finds pills.
    """
    if output.ndim != 3 or output.shape[0] != 1 or output.shape[1] < 5:
        raise ValueError(f"expected detector output [1, 4+C, A], got {output.shape}")
    pred = output[0]
    scores = pred[4:].max(axis=0)
    mask = scores >= conf_threshold
    if not mask.any():
        return np.empty((0, 4), np.float32), np.empty((0,), np.float32)
    cxcywh = pred[:4, mask].T
    sel_scores = scores[mask].astype(np.float32)
    boxes = np.empty_like(cxcywh, dtype=np.float32)
    half_w, half_h = cxcywh[:, 2] / 2, cxcywh[:, 3] / 2
    boxes[:, 0] = cxcywh[:, 0] - half_w
    boxes[:, 1] = cxcywh[:, 1] - half_h
    boxes[:, 2] = cxcywh[:, 0] + half_w
    boxes[:, 3] = cxcywh[:, 1] + half_h
    keep = nms(boxes, sel_scores, iou_threshold, max_detections)
    return boxes[keep], sel_scores[keep]
