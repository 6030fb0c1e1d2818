"""Precision variants listed in the manifest: classifier/detector stage latency and size."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ROUNDS, SceneCtx

from pillsnap_sdk.bench.scenes import MULTI
from pillsnap_sdk.bench.variants import accuracy_delta, with_variant
from pillsnap_sdk.bundle.loader import Bundle, load_bundle
from pillsnap_sdk.pipeline import Identifier


def _variant_ids() -> list[str]:
    """fp32 plus every variant the bundle lists. A bundle that does not load is an error
    here (at collection), not a quiet fp32-only run."""
    from conftest import _bundle_path

    b: Bundle = load_bundle(_bundle_path())
    return ["fp32"] + [f"{v.role}:{v.precision}" for v in b.manifest.variants]


@pytest.mark.parametrize("variant", _variant_ids())
def test_classifier_variant(benchmark: Any, ctx: dict[str, SceneCtx], variant: str) -> None:
    c = ctx[MULTI]
    spec = next(
        (v for v in c.bundle.manifest.variants if f"{v.role}:{v.precision}" == variant), None
    )
    b = with_variant(c.bundle, spec) if spec else c.bundle
    idf = Identifier(b)
    benchmark.group = "precision variants: multi-pill stage"
    if spec is not None and spec.role == "detector":
        benchmark.pedantic(lambda: idf.detect(c.rgb), rounds=ROUNDS, warmup_rounds=1)
    else:
        benchmark.pedantic(
            lambda: idf.classify_probabilities(c.crops), rounds=ROUNDS, warmup_rounds=1
        )
    fname = spec.file if spec else b.manifest.classifier.file
    benchmark.extra_info["size_mb"] = len(b.model_bytes(fname)) / 1e6
    if spec is not None:
        delta, note = accuracy_delta(b.manifest, spec)
        benchmark.extra_info.update({"accuracy_delta": delta, "accuracy_note": note})
