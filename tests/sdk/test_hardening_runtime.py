"""Hostile arguments and hostile engines: typed errors, bounded resources, no NaN answers.

Each case was reproduced by a red-team probe on SDK 0.7.0 and failed there: a thread count
that crashed the process, runners returning nonsense, overflowing logits that leaked a
pydantic error, a manifest ``crop_pct`` that asked OpenCV for terabytes, a batch that held
sixteen 12-MP photos at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from tinymodels import CountingRunner

from pillsnap_sdk import Identifier
from pillsnap_sdk.errors import BundleError, InvalidArgumentError
from pillsnap_sdk.postprocess import calibrated_softmax
from pillsnap_sdk.preprocessing import PreprocessSpec
from pillsnap_sdk.router import GROUP_BYTES
from pillsnap_sdk.runtime import max_intra_op_threads

RGB = np.full((96, 128, 3), 200, np.uint8)


class Returns:
    """A runner that returns a fixed thing (whatever the input)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def run(self, output_names: Any, feeds: dict[str, Any]) -> Any:
        return self.value


class Scaled:
    """Wraps a real runner and rescales its output so its largest magnitude is ``factor``
    (a tampered model's huge but finite logits)."""

    def __init__(self, inner: Any, factor: float) -> None:
        self.inner, self.factor = inner, factor

    def run(self, output_names: Any, feeds: dict[str, Any]) -> list[Any]:
        out = np.asarray(self.inner.run(output_names, feeds)[0], np.float64)
        out = out / max(float(np.abs(out).max()), 1e-12) * self.factor
        return [out.astype(np.float32)]


@pytest.mark.parametrize("threads", [0, -1, 10**6, 2**40, True, 2.0, "4"])
def test_thread_counts_outside_1_to_the_cap_are_refused(tiny_bundle: Path, threads: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="intra_op_threads"):
        Identifier.from_bundle(tiny_bundle, intra_op_threads=threads)


def test_thread_cap_follows_the_cpus_and_the_cap_itself_works(tiny_bundle: Path) -> None:
    cap = max_intra_op_threads()
    assert cap >= 8
    with Identifier.from_bundle(tiny_bundle, intra_op_threads=2) as idf:
        assert idf.identify(RGB).pills


@pytest.mark.parametrize("raw", ["99999999999999999999", "٣", "1_0", "0", "-2"])
def test_env_thread_counts_are_checked_too(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("PILLSNAP_THREADS", raw)
    with pytest.raises(InvalidArgumentError, match="PILLSNAP_THREADS"):
        Identifier.from_bundle(tiny_bundle)


def test_bad_runners_and_flags_are_typed_errors(tiny_bundle: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="Runners"):
        Identifier.from_bundle(tiny_bundle, runners="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="strict_providers"):
        Identifier.from_bundle(tiny_bundle, strict_providers="yes")  # type: ignore[arg-type]
    idf = Identifier.from_bundle(tiny_bundle)
    with pytest.raises(InvalidArgumentError, match="run"):
        idf.with_runners(classifier=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="channel_order"):
        idf.detect(RGB, channel_order="bgr")  # type: ignore[arg-type]
    idf.close()
    with pytest.raises(InvalidArgumentError, match="closed"):
        idf.with_runners(classifier=Returns([]))


@pytest.mark.parametrize(
    "output",
    [[], ["abc"], [np.array(["a", "b"], dtype=object)], [np.float32(3.0)], None, 7],
    ids=["empty", "strings", "object-array", "scalar", "none", "int"],
)
def test_runner_outputs_that_are_not_arrays_are_bundle_errors(
    tiny_bundle: Path, output: Any
) -> None:
    idf = Identifier.from_bundle(tiny_bundle)
    for twin in (
        idf.with_runners(classifier=Returns(output)),
        idf.with_runners(detector=Returns(output)),
    ):
        with pytest.raises(BundleError):
            twin.identify(RGB)


def test_huge_finite_logits_are_a_broken_bundle(tiny_bundle: Path) -> None:
    """Logits near 3e38 overflowed float32 once divided by T < 1: NaN confidences and a raw
    pydantic ValidationError; computed in float64 they named everything at 1.0. Such a model
    is broken: a typed BundleError. The softmax itself stays finite in float64."""
    import onnxruntime as ort

    idf = Identifier.from_bundle(tiny_bundle)
    inner = ort.InferenceSession(str(tiny_bundle / idf.manifest.classifier.file))
    for scale in (3e38, 1e5):
        with pytest.raises(BundleError, match="logit"):
            idf.with_runners(classifier=Scaled(inner, scale)).identify(RGB, mode="single")
    fine = idf.with_runners(classifier=Scaled(inner, 50.0)).identify(RGB, mode="single")
    assert all(0.0 <= c.confidence <= 1.0 for p in fine.pills for c in p.candidates)
    p = calibrated_softmax(np.array([[3e38, -3e38, 0.0]], np.float32), 0.01)
    assert p.dtype == np.float32 and np.isfinite(p).all() and p[0, 0] == 1.0


def test_tiny_crop_pct_is_refused_in_the_manifest() -> None:
    with pytest.raises(ValidationError):
        PreprocessSpec(resize="center-crop", crop_pct=1e-4)
    assert PreprocessSpec(resize="center-crop", crop_pct=0.875).crop_pct == 0.875


def test_identify_batch_bounds_the_photos_it_holds(tiny_bundle: Path) -> None:
    """Single mode: each crop is the whole photo. Photos of ~27 MB go two per classifier
    run (64 MiB budget), not all sixteen in one group; small photos still share runs."""
    import onnxruntime as ort

    idf = Identifier.from_bundle(tiny_bundle)
    counting = CountingRunner(ort.InferenceSession(str(tiny_bundle / idf.manifest.classifier.file)))
    twin = idf.with_runners(classifier=counting)
    big = np.full((3000, 3000, 3), 128, np.uint8)
    assert 2 * big.nbytes <= GROUP_BYTES < 3 * big.nbytes
    twin.identify_batch([big] * 4, mode="single")
    assert counting.batches == [2, 2]
    counting.batches.clear()
    twin.identify_batch([RGB] * 4, mode="single")
    assert counting.batches == [4]
