"""``pillsnap_sdk.boxes``: IoU and greedy NMS, the one implementation runtime and training share."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pillsnap_sdk.boxes import box_iou, box_overlap_of_smaller, nms


def test_box_iou_basics() -> None:
    a = np.array([[0, 0, 2, 2], [10, 10, 12, 12]], np.float32)
    b = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6]], np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 1 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(box_iou(b, a), iou.T)
    assert box_iou(a[:0], b).shape == (0, 3) and box_iou(a, b[:0]).shape == (2, 0)
    inner = np.array([[0, 0, 4, 4]], np.float32)
    assert box_iou(inner, np.array([[1, 1, 3, 3]], np.float32))[0, 0] == pytest.approx(0.25)


def test_nms_keeps_best_of_each_cluster_best_first() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # cluster A, second best
            [50, 50, 60, 60],  # alone
            [0, 0, 10, 11],  # cluster A, best (IoU with box 0 = 10/11)
            [5, 0, 15, 10],  # IoU 50/160 with the best of A: kept at threshold 0.5
        ],
        np.float32,
    )
    scores = np.array([0.8, 0.3, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.5, 100).tolist() == [2, 3, 1]
    assert nms(boxes, scores, 0.3, 100).tolist() == [2, 1]  # 0.3125 > 0.3: box 3 goes
    assert nms(boxes, scores, 0.5, 2).tolist() == [2, 3]  # max_keep stops early
    assert nms(boxes[:0], scores[:0], 0.5, 100).shape == (0,)


def test_nms_equal_scores_keep_input_order() -> None:
    boxes = np.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21]], np.float32)
    assert nms(boxes, np.full(3, 0.5, np.float32), 0.5, 10).tolist() == [0, 1, 2]


def _reference_nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], thr: float,
                   max_keep: int) -> list[int]:  # fmt: skip
    """The textbook greedy loop, one pair at a time, on the same float32 IoU."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # stable
    iou = box_iou(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if len(keep) == max_keep:
            break
        if all(iou[i, k] <= np.float32(thr) for k in keep):
            keep.append(i)
    return keep


@given(
    st.lists(
        st.tuples(
            st.integers(0, 60), st.integers(0, 60), st.integers(1, 30), st.integers(1, 30),
            st.integers(1, 9),
        ),
        max_size=25,
    ),
    st.sampled_from([0.3, 0.5, 0.7]),
    st.integers(1, 30),
)  # fmt: skip
def test_nms_matches_the_textbook_loop(
    rows: list[tuple[int, int, int, int, int]], thr: float, max_keep: int
) -> None:
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in rows], np.float32).reshape(-1, 4)
    scores = np.array([s / 10 for *_, s in rows], np.float32)
    assert nms(boxes, scores, thr, max_keep).tolist() == _reference_nms(
        boxes, scores, thr, max_keep
    )


def test_box_overlap_of_smaller() -> None:
    big = np.array([[0, 0, 10, 10]], np.float32)
    parts = np.array([[1, 1, 6, 6], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    # inside: 1 (IoU only 0.25); half across: 0.5; apart: 0; empty sides: empty matrices
    assert box_overlap_of_smaller(parts, big)[:, 0].tolist() == [1.0, 0.5, 0.0]
    assert box_overlap_of_smaller(big, parts).shape == (1, 3)
    assert box_overlap_of_smaller(big[:0], parts).shape == (0, 3)
