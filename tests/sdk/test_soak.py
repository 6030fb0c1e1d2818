"""Long runs: resident memory stays flat over 10,000 mixed calls in one process.

Why: the SDK lives inside long-running servers and kiosks, where a leak of a few KB per
call becomes an out-of-memory kill after a few days. The workload and the measurement
live in ``scripts/soak.py`` (so the numbers in docs/reliability.md come from the same
code); here they run against the tiny test bundle and the growth is asserted.

RSS is measured with psutil after ``gc.collect()``; the baseline is taken after a
warm-up that has seen every image size, batch size and code path once, so allocator
high-water marks (glibc arenas, onnxruntime's detector arena) are already reached.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pillsnap_sdk import Identifier

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def _load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pillsnap_soak_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


soak_script = _load_soak()


@pytest.mark.slow
@pytest.mark.parametrize("detector", [True, False], ids=["det", "nodet"])
def test_soak_10k_calls_rss_flat(
    tiny_bundle: Path, tiny_bundle_nodet: Path, detector: bool
) -> None:
    """10,000 calls (64 px .. 1600x1200, 0-4 pills, numpy/PNG/JPEG, batches, invalid
    inputs): RSS after the run is within 5 % of RSS after a 500-call warm-up."""
    idf = Identifier.from_bundle(tiny_bundle if detector else tiny_bundle_nodet)
    report = soak_script.soak(idf, 10_000, warmup=500, sample_every=500)
    print("SOAK", json.dumps({"detector": detector, **report}))
    assert report["invalid_calls"] > 0
    assert report["growth_pct"] <= 5.0, report
    assert report["rss_max_mb"] <= report["rss_baseline_mb"] * 1.10, report


def test_soak_quick(tiny_bundle: Path) -> None:
    """A short soak in the normal suite: 300 calls on images up to 640x480 after a
    100-call warm-up. Loose bounds (10 MB and 10 %; measured: ~0.1 MB): they catch a
    gross per-call leak (a 50 KB/call leak injected on purpose grows RSS by ~21 MB
    here), not allocator noise."""
    idf = Identifier.from_bundle(tiny_bundle)
    report = soak_script.soak(idf, 300, warmup=100, sample_every=100, max_side=640)
    print("SOAK-QUICK", json.dumps(report))
    assert report["invalid_calls"] > 0
    assert report["rss_final_mb"] - report["rss_baseline_mb"] <= 10.0, report
    assert report["growth_pct"] <= 10.0, report
