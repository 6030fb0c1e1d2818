"""Tiny hand-built ONNX models and bundles for SDK tests.

They never depend on a trained bundle's accuracy: the classifier names an image by its
mean colour (red/green/blue) and the detector "finds" a pill in each image quadrant that
contains saturated colour. Everything is computed by the graph from the pixels, so the
router, crops, geometry and thresholds are exercised for real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pillsnap_sdk.bundle.manifest import LabelEntry, LabelsFile
from pillsnap_sdk.bundle.writer import write_bundle

CLS_SIZE = 32
DET_SIZE = 64
COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
OPSET = 17


def classifier_onnx(n_classes: int = 3, size: int = CLS_SIZE, batch: int | str = "N") -> bytes:
    """logits = W @ mean_rgb + b, W = 10*I - 5: a pure red image -> class 0, etc."""
    w = np.full((3, n_classes), -5.0, dtype=np.float32)
    for i in range(min(3, n_classes)):
        w[i, i] = 10.0 - 5.0
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, n_classes])],
        initializer=[
            numpy_helper.from_array(w * 2.0, "W"),
            numpy_helper.from_array(np.zeros(n_classes, np.float32), "B"),
        ],
    )
    return _serialise(graph)


def detector_onnx(size: int = DET_SIZE) -> bytes:
    """Output [1, 5, 4]: one fixed box per quadrant, score = quadrant mean of max(R,G,B)."""
    q = size // 2
    boxes = np.array(
        [
            [q / 2, q / 2, q * 0.75, q * 0.75],
            [q * 1.5, q / 2, q * 0.75, q * 0.75],
            [q / 2, q * 1.5, q * 0.75, q * 0.75],
            [q * 1.5, q * 1.5, q * 0.75, q * 0.75],
        ],
        dtype=np.float32,
    ).T[None]  # [1, 4, 4]: (cx, cy, w, h) x anchors
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["cmax"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["cmax"], ["pooled"], kernel_shape=[q, q], strides=[q, q]),
        helper.make_node("Reshape", ["pooled", "shape"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, 4])],
        initializer=[
            numpy_helper.from_array(np.array([1, 1, 4], np.int64), "shape"),
            numpy_helper.from_array(boxes.astype(np.float32), "boxes"),
        ],
    )
    return _serialise(graph)


def _serialise(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def labels(n: int = 3) -> LabelsFile:
    names = list(COLOURS)[:n] + [f"extra{i}" for i in range(max(0, n - 3))]
    return LabelsFile(
        classes=[
            LabelEntry(
                index=i,
                code=f"K-{i:06d}",
                name=f"{nm} pill",
                metadata={"colour": nm, "manufacturer": "Test Pharma"},
            )
            for i, nm in enumerate(names)
        ]
    )


def make_bundle(
    out: Path,
    *,
    detector: bool = True,
    version: str = "1.0.0",
    thresholds: dict[str, Any] | None = None,
    min_sdk_version: str = "0.1.0",
    classifier_batch: int | str = "N",
    classifier_size: int = CLS_SIZE,
    declared_size: int | None = None,
) -> Path:
    """Write a complete, valid tiny bundle to ``out`` and return it."""
    size = declared_size or classifier_size
    cls_spec = {
        "file": "classifier.onnx",
        "precision": "fp32",
        "input_name": "input",
        "input_shape": [classifier_batch, 3, size, size],
        "preprocessing": {
            "resize": "stretch",
            "size": [size, size],
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
        },
        "output_format": "logits",
    }
    models = {"classifier.onnx": classifier_onnx(batch=classifier_batch, size=classifier_size)}
    det_spec = None
    if detector:
        det_spec = {
            "file": "detector.onnx",
            "precision": "fp32",
            "input_name": "images",
            "input_shape": [1, 3, DET_SIZE, DET_SIZE],
            "preprocessing": {"resize": "letterbox", "size": [DET_SIZE, DET_SIZE], "pad_value": 0},
            "output_format": "yolo_cxcywh",
        }
        models["detector.onnx"] = detector_onnx()
    write_bundle(
        out,
        name="tiny-test",
        version=version,
        classifier=cls_spec,
        detector=det_spec,
        models=models,
        labels=labels(),
        model_card="# tiny-test\nSynthetic test bundle.\n",
        extra={
            "min_sdk_version": min_sdk_version,
            "thresholds": {
                "temperature": 1.0,
                "unknown_threshold": 0.6,
                "detector_confidence": 0.5,
                "nms_iou": 0.5,
                "crop_margin": 0.05,
                **(thresholds or {}),
            },
            "data": [{"name": "synthetic", "source": "tests", "licence": "CC0"}],
        },
    )
    return out


def quadrant_image(fill: dict[int, str], size: int = 128) -> np.ndarray:
    """A black square image whose quadrants 0..3 (TL, TR, BL, BR) are filled with colours."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    q = size // 2
    for quad, colour in fill.items():
        y, x = divmod(quad, 2)
        img[y * q : (y + 1) * q, x * q : (x + 1) * q] = COLOURS[colour]
    return img


class CountingRunner:
    """Wraps a runner (an onnxruntime session, another engine) and records each call's
    batch size: a stand-in for another engine, and a way to see how work was batched."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.batches)

    def run(self, names: Any, feeds: dict[str, Any]) -> Any:
        (x,) = feeds.values()
        self.batches.append(len(x))
        return self.inner.run(names, feeds)
