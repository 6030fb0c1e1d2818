"""Per-stage latency of the SDK and of the onnxruntime floor, on both photos.

Groups are per photo, so pytest-benchmark's table puts every stage beside its floor.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ROUNDS, SCENES, SceneCtx

from pillsnap_sdk.image import load_image
from pillsnap_sdk.postprocess import calibrated_softmax, decode_yolo
from pillsnap_sdk.preprocessing import crop_with_margin, preprocess, preprocess_batch

pytestmark = pytest.mark.parametrize("scene", SCENES)


def _run(benchmark: Any, scene: str, fn: Any) -> Any:
    benchmark.group = scene
    return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)


def test_decode(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    _run(benchmark, scene, lambda: load_image(c.scene.data))


def test_detect_preprocess(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    spec = c.bundle.manifest.detector
    if spec is None:
        pytest.skip("no detector")
    _run(benchmark, scene, lambda: preprocess(c.rgb, spec.preprocessing))


def test_detector_stage(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    """Letterbox + session.run + decode/NMS + mapping back to source pixels."""
    c = ctx[scene]
    if not c.idf.has_detector:
        pytest.skip("no detector")
    boxes, _ = _run(benchmark, scene, lambda: c.idf.detect(c.rgb))
    benchmark.extra_info["boxes"] = len(boxes)


def test_detect_postprocess(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    m = c.bundle.manifest
    if c.floor.det is None or m.detector is None:
        pytest.skip("no detector")
    raw = c.floor.det.run(None, {m.detector.input_name: c.det_in})[0]
    th = m.thresholds
    _run(
        benchmark,
        scene,
        lambda: decode_yolo(raw, th.detector_confidence, th.nms_iou, th.max_detections),
    )


def test_crop(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    boxes = [p.bbox.as_tuple() for p in c.idf.identify(c.scene.data).pills if p.bbox]
    margin = c.bundle.manifest.thresholds.crop_margin
    _run(benchmark, scene, lambda: [crop_with_margin(c.rgb, b, margin) for b in boxes])


def test_classify_preprocess(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    spec = c.bundle.manifest.classifier.preprocessing
    _run(benchmark, scene, lambda: preprocess_batch(c.crops, spec))
    benchmark.extra_info["crops"] = len(c.crops)


def test_crop_and_classify_batched(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    """All crops of the photo through one batched classifier run (+ calibrated softmax)."""
    c = ctx[scene]
    _run(benchmark, scene, lambda: c.idf.classify_probabilities(c.crops))
    benchmark.extra_info["crops"] = len(c.crops)


def test_classifier_postprocess(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    m = c.bundle.manifest
    logits = c.floor.cls.run(None, {m.classifier.input_name: c.chunks[0]})[0]
    _run(benchmark, scene, lambda: calibrated_softmax(logits, m.thresholds.temperature))


def test_end_to_end(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    """``identify(JPEG bytes)``: decode, detect, crop, classify, results."""
    c = ctx[scene]
    res = _run(benchmark, scene, lambda: c.idf.identify(c.scene.data))
    benchmark.extra_info["pills"] = len(res.pills)


def test_floor_default_options(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    """Bare session.run, ORT default options, pre-made tensors: the floor."""
    c = ctx[scene]
    _run(benchmark, scene, lambda: c.floor.run(c.det_in, c.chunks))


def test_floor_sdk_options(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    """Bare session.run on sessions built with the SDK's own session options."""
    c = ctx[scene]
    _run(benchmark, scene, lambda: c.sdk_floor.run(c.det_in, c.chunks))
