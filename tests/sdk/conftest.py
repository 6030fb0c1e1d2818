"""Fixtures of the hostile-input tests (test_inputs*.py) and the bundle-integrity tests
(test_bundle_*.py).

Module-scoped Identifiers over the tiny bundles (with and without a detector) and the
corpus written to disk once. A test module that defines its own ``idf`` keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnxruntime
import pytest

from pillsnap_sdk import Identifier

from .bundle_helpers import copy_bundle
from .inputs_common import CORPUS


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``$PILLSNAP_HOME`` and no proxy variables: downloads from a loopback test
    server go straight to it and into a cache no other test sees."""
    d = tmp_path / "home"
    monkeypatch.setenv("PILLSNAP_HOME", str(d))
    for var in ("http_proxy", "https_proxy", "all_proxy"):  # urllib would route 127.0.0.1
        monkeypatch.delenv(var, raising=False)  # through a proxy set for the machine
        monkeypatch.delenv(var.upper(), raising=False)
    return d


@pytest.fixture(scope="module")
def idf_det(tiny_bundle: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def idf_nodet(tiny_bundle_nodet: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle_nodet)


@pytest.fixture(scope="module", params=["det", "nodet"])
def idf(request: pytest.FixtureRequest, idf_det: Identifier, idf_nodet: Identifier) -> Identifier:
    return idf_det if request.param == "det" else idf_nodet


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("badfiles")
    for case in CORPUS:
        (folder / case.name).write_bytes(case.data)
    return folder


@pytest.fixture
def no_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Record (and refuse) any attempt to build an onnxruntime session.

    Recording matters: runtime.create_session wraps *any* exception from the session
    constructor in BundleError, so a raising spy alone could make a wrong test pass.
    """
    calls: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise RuntimeError("InferenceSession must not be created for a refused bundle")

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    yield calls
    assert calls == [], "an onnxruntime session was created before the bundle was verified"


@pytest.fixture
def good(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the valid tiny bundle (with detector)."""
    return copy_bundle(tiny_bundle, tmp_path / "bundle")
