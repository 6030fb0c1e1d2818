"""Make PyPI's CUDA-linked torchvision importable on the CPU-only torch build.

Measured here: with torch 2.13.0+cpu, ``import torchvision`` 0.28.0 fails with
"operator torchvision::nms does not exist" because its compiled ops library does not load,
and its meta registrations then look the op up. timm and ultralytics import torchvision,
so we register pure-torch ``torchvision::nms``/``qnms`` kernels *before* that import.
Call :func:`ensure_torchvision` first thing in any module that imports timm/ultralytics.
torchvision.io's codecs remain unavailable: decode with PIL/cv2.
"""

from __future__ import annotations

import os
import sys

import torch

__all__ = ["ensure_torchvision", "nms_reference"]

_LIB: torch.library.Library | None = None


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS in pure torch; same contract as ``torchvision.ops.nms``."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    b = boxes[order].float()
    x1, y1, x2, y2 = b.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    xx1 = torch.maximum(x1[:, None], x1[None, :])
    yy1 = torch.maximum(y1[:, None], y1[None, :])
    xx2 = torch.minimum(x2[:, None], x2[None, :])
    yy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
    iou = inter / (areas[:, None] + areas[None, :] - inter).clamp(min=1e-9)
    n = b.shape[0]
    suppressed = torch.zeros(n, dtype=torch.bool)
    keep: list[int] = []
    iou_cpu = iou.cpu()
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou_cpu[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def ensure_torchvision() -> None:
    """Register the missing ops (idempotent) and set offline defaults for ultralytics."""
    global _LIB
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if _LIB is not None or "torchvision" in sys.modules:
        return
    try:
        torch.ops.torchvision.nms  # noqa: B018 - probing for the compiled op
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")  # type: ignore[no-untyped-call]
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")  # type: ignore[no-untyped-call]
    lib.impl("nms", nms_reference, "CompositeExplicitAutograd")  # type: ignore[no-untyped-call]
    lib.impl("qnms", nms_reference, "CompositeExplicitAutograd")  # type: ignore[no-untyped-call]
    _LIB = lib
    import torchvision.extension

    # torchvision.ops.nms checks that its C++ library loaded; our kernel stands in for it.
    torchvision.extension._has_ops = lambda: True
