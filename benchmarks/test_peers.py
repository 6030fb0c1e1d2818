"""Peers on the same weights: Ultralytics predict, timm eager, and the seed serving style.

Skipped (not failed) when a peer's package or the classifier's torch weights are missing;
``pillsnap bench`` reports those as "not run" with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import ROUNDS, SCENES, SceneCtx

from benchmarks import peers
from benchmarks.seed_style import SeedStylePeer

pytestmark = pytest.mark.parametrize("scene", SCENES)


def _run(benchmark: Any, group: str, fn: Any) -> Any:
    benchmark.group = group
    return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)


def test_ours_detector_stage(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    if not c.idf.has_detector:
        pytest.skip("no detector")
    _run(benchmark, f"{scene}: detector stage", lambda: c.idf.detect(c.rgb))


def test_peer_ultralytics_predict(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    """(a) ``YOLO(detector.onnx, task="detect").predict`` on the same BGR pixels."""
    c = ctx[scene]
    m = c.bundle.manifest
    if m.detector is None:
        pytest.skip("no detector")
    peers.import_torch_stack()
    ultralytics = pytest.importorskip("ultralytics")
    bgr = np.ascontiguousarray(c.rgb[:, :, ::-1])
    kw = peers.yolo_predict_kwargs(m)
    with peers.model_file(c.bundle, m.detector.file) as path:
        yolo = ultralytics.YOLO(str(path), task="detect")
        _run(benchmark, f"{scene}: detector stage", lambda: yolo.predict(bgr, **kw))


def test_ours_classify_stage(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    _run(benchmark, f"{scene}: classifier stage", lambda: c.idf.classify_probabilities(c.crops))


def test_peer_timm_eager(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    """(b) timm model, torch eager, timm's eval transform per crop, batched forward."""
    c = ctx[scene]
    peers.import_torch_stack()
    pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    from PIL import Image

    try:
        model, tf = peers.load_timm_classifier(c.bundle, len(c.idf.labels.classes))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    pil = [Image.fromarray(x) for x in c.crops]

    def run() -> Any:
        batch = torch.stack([tf(x) for x in pil])
        with torch.inference_mode():
            return model(batch).softmax(-1)

    _run(benchmark, f"{scene}: classifier stage", run)


def test_ours_end_to_end(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    c = ctx[scene]
    _run(benchmark, f"{scene}: end to end", lambda: c.idf.identify(c.scene.data))


def test_peer_seed_style(benchmark: Any, ctx: dict[str, SceneCtx], scene: str) -> None:
    """(c) CLAHE, float64 numpy, one classifier run per crop, same ONNX models."""
    c = ctx[scene]
    seed = SeedStylePeer(c.bundle)
    out = _run(benchmark, f"{scene}: end to end", lambda: seed(c.scene.data))
    benchmark.extra_info["crops"] = len(out)
