"""Shared fixtures for the pytest-benchmark suites (``pytest benchmarks/``).

The bundle is, in order: ``$PILLSNAP_BENCH_BUNDLE``, the repository's default bundle
(``models/DEFAULT``) when it exists, else the cached *bench bundle* (random weights, real
architectures; built on first use by ``make_bench_bundle.py``, ~30 s). Photos come from
``$PILLSNAP_BENCH_IMAGES`` or the pushin-pill training photos, else synthetic ones.

Rounds per benchmark: ``$PILLSNAP_BENCH_ROUNDS`` (default 10). Every number here is also in
``pillsnap bench``; these suites add pytest-benchmark's tables, JSON and ``--benchmark-compare``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_bench_bundle import bench_bundle_path

from benchmarks.photos import bench_scenes
from pillsnap_sdk.bench.floor import Floor
from pillsnap_sdk.bench.floorsearch import search_floor
from pillsnap_sdk.bench.scenes import MULTI, SINGLE, Scene, crops_for, scene_bundle
from pillsnap_sdk.bundle.loader import Bundle, load_bundle
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.errors import BundleError
from pillsnap_sdk.image import load_image
from pillsnap_sdk.pipeline import Identifier

ROUNDS = int(os.environ.get("PILLSNAP_BENCH_ROUNDS", "10"))
SCENES = (SINGLE, MULTI)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "goal: asserts an issue goal (SDK/best floor <= 1.10, ours/peers <= 0.3, 12 MP <= 1.3x "
        "0.3 MP, identify_batch never slower than a loop)",
    )


def _bundle_path() -> Path:
    env = os.environ.get("PILLSNAP_BENCH_BUNDLE")
    if env:
        return Path(env)
    try:
        path = default_bundle_path()
        if path.exists():
            return path
    except BundleError:
        pass
    return Path(bench_bundle_path())


@dataclass
class SceneCtx:
    """Everything one photo needs, made once: Identifier, floors, pixels, crops, tensors."""

    scene: Scene
    bundle: Bundle
    idf: Identifier
    floor: Floor
    sdk_floor: Floor
    rgb: npt.NDArray[np.uint8]
    crops: list[npt.NDArray[np.uint8]]
    det_in: npt.NDArray[np.float32] | None
    chunks: list[npt.NDArray[np.float32]]


@pytest.fixture(scope="session")
def bundle() -> Bundle:
    return load_bundle(_bundle_path())


@pytest.fixture(scope="session")
def scenes() -> dict[str, Scene]:
    return {s.name: s for s in bench_scenes()}


@pytest.fixture(scope="session")
def ctx(bundle: Bundle, scenes: dict[str, Scene]) -> dict[str, SceneCtx]:
    out: dict[str, SceneCtx] = {}
    for name, sc in scenes.items():
        b = scene_bundle(bundle, sc)
        idf = Identifier(b)
        rgb = load_image(sc.data)
        crops = crops_for(idf, rgb, idf.identify(sc.data))
        # the bench's floor: the fastest bare onnxruntime configuration found on these crops
        floor = Floor(b, config=search_floor(b, ["CPUExecutionProvider"], rgb, crops).best)
        det_in, chunks = floor.inputs(rgb, crops)
        out[name] = SceneCtx(
            sc, b, idf, floor, Floor(b, sdk_options=True), rgb, crops, det_in, chunks
        )
    return out
