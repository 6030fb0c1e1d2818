"""Helpers of the bundle-integrity tests: copy, re-form, edit, re-hash and repackage a
bundle, and run ``pillsnap bundle verify``. Shared so every test tampers the same way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from pillsnap_sdk.bundle import loader
from pillsnap_sdk.bundle.manifest import LabelsFile, canonical_manifest_digest
from pillsnap_sdk.bundle.writer import write_bundle, zip_bundle
from pillsnap_sdk.cli import main

BUNDLE_FILES = ("MODEL_CARD.md", "classifier.onnx", "detector.onnx", "labels.json", "manifest.json")
FORMS = ("dir", "zip")
REPO = Path(__file__).resolve().parents[2]
HYPO = settings(
    deadline=None,
    database=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- helpers ---------------------------------------------------------------------------------
def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def in_form(bundle_dir: Path, form: str) -> Path:
    """The bundle as a directory or as the ``.zip`` the writer's ``zip_bundle`` makes."""
    if form == "dir":
        return bundle_dir
    return zip_bundle(bundle_dir, bundle_dir.with_suffix(".zip"))


def read_manifest(bundle: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((bundle / "manifest.json").read_text("utf-8"))
    return raw


def write_manifest(bundle: Path, raw: dict[str, Any], *, reseal: bool) -> None:
    """Write ``raw`` back; ``reseal`` recomputes ``manifest_sha256`` like the packager."""
    if reseal:
        raw["manifest_sha256"] = canonical_manifest_digest(raw)
    (bundle / "manifest.json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")


def rehash(bundle: Path, raw: dict[str, Any] | None = None) -> None:
    """What an attacker who knows the format does: recompute every hash, then the digest."""
    raw = raw or read_manifest(bundle)
    for name in raw["files"]:
        raw["files"][name] = loader.sha256_hex((bundle / name).read_bytes())
    for role in ("classifier", "detector"):
        if raw.get(role):
            raw[role]["sha256"] = raw["files"][raw[role]["file"]]
    write_manifest(bundle, raw, reseal=True)


def repackage(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    """Rebuild ``src`` with some model bytes replaced, through the real ``write_bundle``:
    every hash and the digest are correct, only the model content is wrong."""
    raw = read_manifest(src)
    models = {
        raw[r]["file"]: (src / raw[r]["file"]).read_bytes()
        for r in ("classifier", "detector")
        if raw.get(r)
    }
    models.update(replace)

    def spec(role: str) -> dict[str, Any] | None:
        if not raw.get(role):
            return None
        return {k: v for k, v in raw[role].items() if k != "sha256"}

    cls_spec = spec("classifier")
    assert cls_spec is not None
    write_bundle(
        dst,
        name=raw["name"],
        version=raw["version"],
        classifier=cls_spec,
        detector=spec("detector"),
        models=models,
        labels=LabelsFile.model_validate_json((src / "labels.json").read_bytes()),
        model_card=(src / "MODEL_CARD.md").read_text("utf-8"),
        extra={
            k: raw[k]
            for k in (
                "min_sdk_version",
                "created_at",
                "thresholds",
                "metrics",
                "provenance",
                "data",
            )
        },
    )
    return dst


def verify_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["bundle", "verify", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err
