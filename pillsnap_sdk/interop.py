"""Results in other tools' formats: ``supervision.Detections`` and COCO JSON.

Why here and not in the results model: both are views for other ecosystems. supervision
is optional (imported only when asked for; a clear error says how to get it), and COCO
needs the bundle's class list, which a single result does not carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .bundle.manifest import LabelsFile
from .errors import InvalidArgumentError, MissingDependencyError
from .results import IdentifyResult, PillResult

__all__ = ["UNKNOWN_CATEGORY_ID", "to_coco", "to_supervision"]

#: COCO category id of pills whose best candidate is below the unknown threshold.
UNKNOWN_CATEGORY_ID = 0


def _box(pill: PillResult, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The pill's box; a whole-photo classification covers the whole photo."""
    if pill.bbox is not None:
        return pill.bbox.as_tuple()
    w, h = size
    return (0.0, 0.0, float(w), float(h))


def to_supervision(result: IdentifyResult) -> Any:
    """``supervision.Detections`` for one result (supervision must be installed).

    ``xyxy`` the boxes (the whole photo when it was classified without detection),
    ``confidence`` the detector's score (1.0 for the whole photo), ``class_id`` the bundle
    class index of the label, or -1 for an unknown pill; ``data`` holds ``class_name``
    (what supervision's LabelAnnotator shows: the name, or "unknown"), ``code``,
    ``status`` and ``class_confidence`` (the calibrated probability of the best candidate).
    """
    try:
        import supervision as sv
    except ImportError as exc:
        raise MissingDependencyError(
            "IdentifyResult.to_supervision() needs the optional 'supervision' package: "
            "pip install supervision"
        ) from exc
    pills = result.pills
    xyxy = np.array([_box(p, result.image_size) for p in pills], dtype=np.float32).reshape(-1, 4)
    conf = [1.0 if p.detection_confidence is None else p.detection_confidence for p in pills]
    return sv.Detections(
        xyxy=xyxy,
        confidence=np.array(conf, dtype=np.float32),
        class_id=np.array([p.label.class_index if p.label else -1 for p in pills], dtype=int),
        data={
            "class_name": np.array([p.label.name if p.label else "unknown" for p in pills]),
            "code": np.array([p.label.code if p.label else "" for p in pills]),
            "status": np.array([p.status for p in pills]),
            "class_confidence": np.array(
                [p.candidates[0].confidence if p.candidates else 0.0 for p in pills],
                dtype=np.float32,
            ),
        },
    )


def to_coco(
    results: Sequence[IdentifyResult],
    file_names: Sequence[str],
    labels: LabelsFile,
) -> dict[str, Any]:
    """One COCO document for a set of photos: ``images``, ``categories``, ``annotations``.

    Category ids are the bundle's class index + 1 (COCO ids start at 1);
    :data:`UNKNOWN_CATEGORY_ID` (0, "unknown") marks pills below the unknown threshold.
    Each annotation has ``bbox`` as ``[x, y, width, height]``, ``area``, ``score`` (the
    calibrated probability of the best candidate, detector score in
    ``detection_score``) and ``iscrowd: 0``; the ``annotations`` list is also a valid
    COCO *results* file for pycocotools' ``loadRes``.
    """
    if len(results) != len(file_names):
        raise InvalidArgumentError(
            f"to_coco needs one file name per result ({len(results)} results, "
            f"{len(file_names)} names)"
        )
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (res, name) in enumerate(zip(results, file_names, strict=True), 1):
        w, h = res.image_size
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for pill in res.pills:
            x1, y1, x2, y2 = _box(pill, res.image_size)
            best = pill.candidates[0] if pill.candidates else None
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": (
                        pill.label.class_index + 1 if pill.label else UNKNOWN_CATEGORY_ID
                    ),
                    "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                    "area": round((x2 - x1) * (y2 - y1), 2),
                    "iscrowd": 0,
                    "score": round(best.confidence, 6) if best else 0.0,
                    "detection_score": pill.detection_confidence,
                }
            )
    categories = [{"id": UNKNOWN_CATEGORY_ID, "name": "unknown", "supercategory": "pill"}] + [
        {"id": c.index + 1, "name": c.name, "code": c.code, "supercategory": "pill"}
        for c in labels.classes
    ]
    return {"images": images, "categories": categories, "annotations": annotations}
