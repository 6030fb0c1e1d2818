"""Box geometry on xyxy pixel boxes: pairwise IoU and greedy non-maximum suppression.

The one home of both: the runtime decodes detections with :func:`nms`, and the release
tooling (matching, calibration, parity checks) scores boxes with :func:`box_iou`, so there
is one IoU and one NMS to read and test. A public module of the SDK (``from
pillsnap_sdk.boxes import box_iou, nms``); numpy only.

Why numpy and not ``cv2.dnn.NMSBoxes`` (measured: ``docs/performance.md``, "NMS"): OpenCV
is faster per call (0.05 against 0.47 ms on the 118 candidates of the 22-pill table, on a
loaded box), but it computes the overlap in double precision, so a pair whose IoU lies
within float rounding of the threshold can be kept by one and suppressed by the other
(1344 of 20000 pairs built at IoU 0.5 +- 1e-6), and it cannot stop after ``max_keep``
boxes (its ``top_k`` cuts the candidates *before* suppression, which changes the result),
which made it 11 times slower on 3000 scattered boxes. NMS is under 0.5 ms of a photo's
100 to 500 ms, so keeping the kept boxes of earlier releases exactly wins.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["box_iou", "box_overlap_of_smaller", "nms"]

F32 = npt.NDArray[np.float32]


def _intersections(a: F32, b: F32) -> tuple[F32, F32, F32]:
    """Pairwise intersection areas (``len(a) x len(b)``) and each side's box areas."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter, area_a, area_b


def box_iou(a: F32, b: F32) -> F32:
    """Pairwise IoU of xyxy boxes: ``len(a) x len(b)``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inter, area_a, area_b = _intersections(a, b)
    out: F32 = (inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)).astype(
        np.float32
    )
    return out


def box_overlap_of_smaller(a: F32, b: F32) -> F32:
    """Pairwise intersection over the smaller box's area: ``len(a) x len(b)``. Near 1 when
    one box lies inside the other (a part of a pill inside the pill's box), whatever
    their IoU."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inter, area_a, area_b = _intersections(a, b)
    smaller = np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)
    out: F32 = (inter / smaller).astype(np.float32)
    return out


def nms(boxes: F32, scores: F32, iou_threshold: float, max_keep: int) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression on xyxy boxes; returns kept indices, best first.

    A box is suppressed when its IoU with a kept box is above ``iou_threshold``; equal
    scores keep their input order (stable sort). Stops after ``max_keep`` boxes, which is
    what keeps a photo with thousands of low-confidence candidates cheap.
    """
    if boxes.shape[0] == 0:
        return np.empty((0,), dtype=np.intp)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)
