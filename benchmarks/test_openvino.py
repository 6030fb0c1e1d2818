"""OpenVINO execution provider against the CPU provider, as pytest-benchmark groups.

Why beside ``openvino_compare.py``: this gives pytest-benchmark's tables, JSON and
``--benchmark-compare`` history for the same rows (identify, detector stage, classifier
stage on both photos); the script gives the interleaved ratios and the agreement checks.
Needs the ``openvino`` extra (README, Extras); skipped without it.
"""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
import pytest
from conftest import ROUNDS, SCENES, SceneCtx

from pillsnap_sdk.bundle.loader import Bundle
from pillsnap_sdk.pipeline import Identifier

OPENVINO = "OpenVINOExecutionProvider"
pytestmark = [
    pytest.mark.skipif(
        OPENVINO not in ort.get_available_providers(),
        reason="needs onnxruntime-openvino (the openvino extra)",
    ),
    pytest.mark.parametrize("provider", ["cpu", "openvino"]),
    pytest.mark.parametrize("scene", SCENES),
]


@pytest.fixture(scope="module")
def idfs(bundle: Bundle) -> dict[str, Identifier]:
    return {
        "cpu": Identifier(bundle, providers=["cpu"], strict_providers=True),
        "openvino": Identifier(bundle, providers=["openvino"], strict_providers=True),
    }


def _run(benchmark: Any, what: str, scene: str, fn: Any) -> Any:
    benchmark.group = f"openvino vs cpu: {what}, {scene}"
    return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=2, iterations=1)


def test_identify(
    benchmark: Any, ctx: dict[str, SceneCtx], idfs: dict[str, Identifier], provider: str, scene: str
) -> None:
    idf, data = idfs[provider], ctx[scene].scene.data
    _run(benchmark, "identify", scene, lambda: idf.identify(data))


def test_detector_stage(
    benchmark: Any, ctx: dict[str, SceneCtx], idfs: dict[str, Identifier], provider: str, scene: str
) -> None:
    idf, rgb = idfs[provider], ctx[scene].rgb
    if not idf.has_detector:
        pytest.skip("no detector")
    _run(benchmark, "detector stage", scene, lambda: idf.detect(rgb))


def test_classifier_stage(
    benchmark: Any, ctx: dict[str, SceneCtx], idfs: dict[str, Identifier], provider: str, scene: str
) -> None:
    idf, crops = idfs[provider], ctx[scene].crops
    _run(benchmark, "classifier stage", scene, lambda: idf.classify_probabilities(crops))
    benchmark.extra_info["crops"] = len(crops)
