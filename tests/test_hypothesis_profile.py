"""The Hypothesis profile registered in tests/conftest.py is the one in force."""

from __future__ import annotations

import os

from hypothesis import settings


def test_profile_follows_the_environment() -> None:
    want = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    current = settings.default
    assert current is not None
    profile = settings.get_profile(want)
    assert (current.derandomize, current.print_blob, current.deadline) == (
        profile.derandomize,
        profile.print_blob,
        profile.deadline,
    )


def test_ci_profile_replays_failures() -> None:
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.print_blob and ci.deadline is None
    assert settings.get_profile("dev").print_blob
