"""The shipped JSON schema is the one the manifest model generates (no drift)."""

from __future__ import annotations

from pillsnap_sdk.bundle.schema import SCHEMA_PATH, render


def test_shipped_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "run `python -m pillsnap_sdk.bundle.schema` after changing the manifest model"
    )
