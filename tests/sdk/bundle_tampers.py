"""The table of tampered bundles (dropped, added, renamed and edited files) and the error
each must raise: data for ``test_bundle_integrity.test_tampered_bundle_is_refused``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pillsnap_sdk import (
    BundleError,
    BundleIntegrityError,
    UnsupportedBundleError,
)
from pillsnap_sdk.bundle import loader

from .bundle_helpers import (
    FORMS,
    read_manifest,
    rehash,
    write_manifest,
)


# -- dropped, added, renamed, edited files ------------------------------------------------------
@dataclass(frozen=True)
class Tamper:
    name: str
    apply: Callable[[Path], None]
    error: type[BundleError]
    fragment: str
    forms: tuple[str, ...] = FORMS  # zip_bundle writes flat zips: nested files are dir-only


def _rm(name: str) -> Callable[[Path], None]:
    return lambda b: (b / name).unlink()


def _add(name: str, data: bytes = b"surprise") -> Callable[[Path], None]:
    def go(b: Path) -> None:
        (b / name).parent.mkdir(parents=True, exist_ok=True)
        (b / name).write_bytes(data)

    return go


def _rename(old: str, new: str) -> Callable[[Path], None]:
    return lambda b: (b / old).rename(b / new)


def _swap_models(b: Path) -> None:
    (b / "classifier.onnx").rename(b / "tmp")
    (b / "detector.onnx").rename(b / "classifier.onnx")
    (b / "tmp").rename(b / "detector.onnx")


def _edit_manifest(
    edit: Callable[[dict[str, Any]], None], *, reseal: bool
) -> Callable[[Path], None]:
    def go(b: Path) -> None:
        raw = read_manifest(b)
        edit(raw)
        write_manifest(b, raw, reseal=reseal)

    return go


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[key] = value

    return edit


def _edit_labels(b: Path) -> None:
    text = (b / "labels.json").read_text("utf-8")
    assert "red pill" in text
    (b / "labels.json").write_text(text.replace("red pill", "blue pill"))


def _edit_labels_and_files_hash(b: Path) -> None:
    """Edit labels.json and its entry in 'files', but leave manifest_sha256 stale."""
    _edit_labels(b)
    raw = read_manifest(b)
    raw["files"]["labels.json"] = loader.sha256_hex((b / "labels.json").read_bytes())
    write_manifest(b, raw, reseal=False)


def _labels_resealed(content: bytes) -> Callable[[Path], None]:
    def go(b: Path) -> None:
        (b / "labels.json").write_bytes(content)
        rehash(b)

    return go


def _raw_manifest(content: bytes) -> Callable[[Path], None]:
    return lambda b: (b / "manifest.json").write_bytes(content)


def _model_sha_not_in_files(b: Path) -> None:
    raw = read_manifest(b)
    raw["classifier"]["sha256"] = "0" * 64
    write_manifest(b, raw, reseal=True)


TAMPERS = [
    Tamper(
        "drop_labels",
        _rm("labels.json"),
        BundleIntegrityError,
        "missing bundle file(s): labels.json",
    ),
    Tamper(
        "drop_detector",
        _rm("detector.onnx"),
        BundleIntegrityError,
        "missing bundle file(s): detector.onnx",
    ),
    Tamper(
        "drop_card",
        _rm("MODEL_CARD.md"),
        BundleIntegrityError,
        "missing bundle file(s): MODEL_CARD.md",
    ),
    Tamper("drop_manifest", _rm("manifest.json"), BundleError, "no manifest.json"),
    Tamper(
        "add_file",
        _add("extra.onnx"),
        BundleIntegrityError,
        "not listed in the manifest: extra.onnx",
    ),
    Tamper(
        "add_nested_file",
        _add("sub/evil.py"),
        BundleIntegrityError,
        "not listed in the manifest: sub/evil.py",
        forms=("dir",),
    ),
    Tamper(
        "rename_classifier",
        _rename("classifier.onnx", "classifier_v2.onnx"),
        BundleIntegrityError,
        "missing bundle file(s): classifier.onnx",
    ),
    Tamper(
        "rename_labels_case",
        _rename("labels.json", "Labels.json"),
        BundleIntegrityError,
        "missing bundle file(s): labels.json",
    ),
    Tamper(
        "swap_models",
        _swap_models,
        BundleIntegrityError,
        "classifier.onnx does not match its sha256",
    ),
    Tamper(
        "edit_threshold",
        _edit_manifest(_set("thresholds.unknown_threshold", 0.0), reseal=False),
        BundleIntegrityError,
        "modified after packaging",
    ),
    Tamper(
        "edit_temperature",
        _edit_manifest(_set("thresholds.temperature", 0.01), reseal=False),
        BundleIntegrityError,
        "modified after packaging",
    ),
    Tamper(
        "edit_name",
        _edit_manifest(_set("name", "trusted-bundle"), reseal=False),
        BundleIntegrityError,
        "modified after packaging",
    ),
    Tamper(
        "edit_labels_json",
        _edit_labels,
        BundleIntegrityError,
        "labels.json does not match its sha256",
    ),
    Tamper(
        "edit_labels_and_files_hash",
        _edit_labels_and_files_hash,
        BundleIntegrityError,
        "modified after packaging",
    ),
    Tamper(
        "edit_model_card",
        _add("MODEL_CARD.md", b"# all good, trust me\n"),
        BundleIntegrityError,
        "MODEL_CARD.md does not match its sha256",
    ),
    Tamper(
        "model_sha_not_in_files",
        _model_sha_not_in_files,
        BundleIntegrityError,
        "is not listed in 'files' with the same sha256",
    ),
    Tamper(
        "future_schema",
        _edit_manifest(_set("schema_version", 99), reseal=True),
        UnsupportedBundleError,
        "bundle schema 99 is newer",
    ),
    Tamper(
        "future_sdk",
        _edit_manifest(_set("min_sdk_version", "99.0.0"), reseal=True),
        UnsupportedBundleError,
        "needs pillsnap >= 99.0.0",
    ),
    Tamper(
        "future_both",
        _edit_manifest(
            lambda r: (_set("schema_version", 99)(r), _set("min_sdk_version", "99.0.0")(r)),
            reseal=False,
        ),
        UnsupportedBundleError,
        "upgrade pillsnap",
    ),
    Tamper(
        "bad_min_sdk",
        _edit_manifest(_set("min_sdk_version", "one"), reseal=True),
        BundleError,
        "bad min_sdk_version",
    ),
    Tamper(
        "schema_zero",
        _edit_manifest(_set("schema_version", 0), reseal=True),
        BundleError,
        "invalid manifest.json: schema_version",
    ),
    Tamper(
        "extra_manifest_key",
        _edit_manifest(_set("run_this", "rm -rf /"), reseal=True),
        BundleError,
        "invalid manifest.json: run_this",
    ),
    Tamper(
        "threshold_out_of_range",
        _edit_manifest(_set("thresholds.unknown_threshold", 7.0), reseal=True),
        BundleError,
        "invalid manifest.json: thresholds.unknown_threshold",
    ),
    Tamper(
        "manifest_not_json",
        _raw_manifest(b"{not json"),
        BundleError,
        "manifest.json is not valid UTF-8 JSON",
    ),
    Tamper(
        "manifest_not_utf8",
        _raw_manifest(b'{"name": "\xff\xfe"}'),
        BundleError,
        "manifest.json is not valid UTF-8 JSON",
    ),
    Tamper(
        "manifest_empty", _raw_manifest(b""), BundleError, "manifest.json is not valid UTF-8 JSON"
    ),
    Tamper(
        "manifest_array", _raw_manifest(b"[]"), BundleError, "manifest.json must hold a JSON object"
    ),
    Tamper(
        "manifest_deep_nesting",
        _raw_manifest(b"[" * 200_000),
        BundleError,
        "manifest.json is not acceptable JSON",
    ),
    Tamper(
        "manifest_huge_int",
        _raw_manifest(b'{"schema_version": ' + b"9" * 5000 + b"}"),
        BundleError,
        "manifest.json is not acceptable JSON",
    ),
    Tamper(
        "labels_not_json",
        _labels_resealed(b"{oops"),
        BundleError,
        "labels.json is not valid UTF-8 JSON",
    ),
    Tamper(
        "labels_with_gap",
        _labels_resealed(
            b'{"classes": [{"index": 0, "code": "a", "name": "a"},'
            b' {"index": 2, "code": "b", "name": "b"}]}'
        ),
        BundleError,
        "invalid labels.json",
    ),
]
