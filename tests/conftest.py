from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings
from tinymodels import make_bundle

# Hypothesis profiles. "ci" (loaded when $CI is set): derandomised, so a failure seen in CI
# is the same failure on a rerun and on a laptop, and the failing example is printed as a
# @reproduce_failure blob. "dev" (the default): random exploration, blob printed too.
# Pick one explicitly with HYPOTHESIS_PROFILE=ci|dev. Per-test @settings still win for the
# values they set (max_examples, deadline, ...).
settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
settings.register_profile("dev", print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture(scope="session")
def tiny_bundle_nodet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "tiny-nodet", detector=False)
