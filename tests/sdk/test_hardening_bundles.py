"""Hardening II, bundles: re-sealed bundles that lie, and reading before refusing.

Why: ``test_bundle_integrity`` covers bundles whose hashes are wrong. A careless packager
(or an attacker) recomputes every hash and the digest after an edit; those bundles used to
pass ``bundle verify`` and then crash on every call (classifier declared as the detector),
lie (temperature 1e-45 -> NaN confidences, a NaN mean -> nothing ever detected) or burn a
server (confidence 0 + IoU 1 + 10,000 detections). Each case here is re-sealed, so only
the *meaning* is wrong: it must be refused at load, by ``bundle verify`` too, with a
:class:`BundleError` that says what is wrong. Large files must be refused without being
read into memory: checked by peak RSS in a child process.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tinymodels import classifier_onnx

from pillsnap_sdk import BundleError, BundleIntegrityError, Identifier, InvalidArgumentError
from pillsnap_sdk.bundle import loader
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.bundle.manifest import canonical_manifest_digest
from pillsnap_sdk.bundle.writer import zip_bundle
from pillsnap_sdk.cli import main

REPO = Path(__file__).resolve().parents[2]


def _reseal(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Edit the manifest as JSON, recompute every file hash and the digest (re-seal)."""
    raw = json.loads((bundle / "manifest.json").read_text("utf-8"))
    edit(raw)
    for name in raw["files"]:
        raw["files"][name] = loader.sha256_hex((bundle / name).read_bytes())
    for role in ("classifier", "detector"):
        if isinstance(raw.get(role), dict) and raw[role].get("file") in raw["files"]:
            raw[role]["sha256"] = raw["files"][raw[role]["file"]]
    raw["manifest_sha256"] = canonical_manifest_digest(raw)
    (bundle / "manifest.json").write_text(json.dumps(raw, indent=2, sort_keys=True))
    return bundle


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[last] = value

    return edit


def _swap_roles(raw: dict[str, Any]) -> None:
    """Declare the classifier's file as the detector (keeping the detector's spec)."""
    raw["detector"]["file"] = "classifier.onnx"
    raw["detector"]["input_name"] = "input"
    raw["detector"]["input_shape"] = ["N", 3, 32, 32]
    raw["detector"]["preprocessing"]["size"] = [32, 32]


def _nan_literal(raw: dict[str, Any]) -> None:
    raw["thresholds"]["temperature"] = float("nan")  # json.dumps writes NaN


# name -> (edit, message fragment)
RESEALED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "classifier_as_detector": (_swap_roles, "does not fit output_format 'yolo_cxcywh'"),
    "temperature_tiny": (_set("thresholds.temperature", 1e-45), "temperature"),
    "temperature_huge": (_set("thresholds.temperature", 1e300), "temperature"),
    "temperature_nan": (_nan_literal, "not a JSON number"),
    "temperature_string": (_set("thresholds.temperature", "1.0"), "temperature"),
    "mean_string_nan": (_set("classifier.preprocessing.mean", [0.5, "NaN", 0.5]), "mean"),
    "mean_huge": (_set("classifier.preprocessing.mean", [0.5, 1e9, 0.5]), "mean"),
    "std_tiny": (_set("detector.preprocessing.std", [1e-30, 1.0, 1.0]), "std"),
    "size_huge": (_set("classifier.preprocessing.size", [100000, 100000]), "size"),
    "schema_string": (_set("schema_version", "99"), "schema_version"),
    "schema_float": (_set("schema_version", 2.0), "schema_version"),
    "schema_bool": (_set("schema_version", True), "schema_version"),
    "schema_zero": (_set("schema_version", 0), "schema_version"),
    "max_detections_bool": (_set("thresholds.max_detections", True), "max_detections"),
    "max_detections_huge": (_set("thresholds.max_detections", 10_000), "max_detections"),
    "max_detections_float": (_set("thresholds.max_detections", 100.0), "max_detections"),
    "confidence_zero": (_set("thresholds.detector_confidence", 0.0), "detector_confidence"),
    "nms_iou_one": (_set("thresholds.nms_iou", 1.0), "nms_iou"),
    "unknown_string": (_set("thresholds.unknown_threshold", "0.5"), "unknown_threshold"),
    "input_shape_3d": (_set("classifier.input_shape", ["N", 3, 32]), "input_shape"),
    "input_shape_negative": (_set("classifier.input_shape", ["N", 3, -32, 32]), "input_shape"),
    "file_with_slash": (_set("classifier.file", "../classifier.onnx"), "file"),
    "detector_says_logits": (_set("detector.output_format", "logits"), "yolo_cxcywh"),
    "classifier_says_yolo": (_set("classifier.output_format", "yolo_cxcywh"), "logits"),
    "precision_unknown": (_set("classifier.precision", "fp64"), "precision"),
}


@pytest.fixture
def good(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.mark.parametrize("form", ["dir", "zip"])
@pytest.mark.parametrize("case", sorted(RESEALED))
def test_resealed_bundle_that_lies_is_refused(
    good: Path, case: str, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, fragment = RESEALED[case]
    path = _reseal(good, edit)
    if form == "zip":
        path = zip_bundle(path, path.with_suffix(".zip"))
    with pytest.raises(BundleError, match=r"invalid manifest|not acceptable|output") as info:
        Identifier.from_bundle(path)
    assert fragment in str(info.value), info.value
    assert not isinstance(info.value, BundleIntegrityError)  # the seal itself is fine
    capsys.readouterr()
    assert main(["bundle", "verify", str(path)]) == 1  # verify runs the same checks
    out = capsys.readouterr().out
    assert out.startswith("REFUSED") and fragment in out, out


def test_sane_resealed_edit_still_loads(good: Path) -> None:
    """Guard: the re-seal helper itself produces loadable bundles (cases fail for meaning)."""
    path = _reseal(good, _set("thresholds.temperature", 2.0))
    assert Identifier.from_bundle(path).manifest.thresholds.temperature == 2.0


def test_default_bundle_passes_the_new_checks(capsys: pytest.CaptureFixture[str]) -> None:
    """models/pushin-pill-edge loads unchanged (not re-sealed) under the strict schema."""
    bundle = REPO / "models" / "pushin-pill-edge"
    assert main(["bundle", "verify", str(bundle)]) == 0, capsys.readouterr()


def test_duplicate_manifest_key_is_refused(good: Path) -> None:
    """The digest covers the *parsed* manifest; a duplicate key could hide a second value."""
    text = (good / "manifest.json").read_text("utf-8")
    dup = text.replace('"thresholds": {', '"thresholds": {"temperature": 5.0, ', 1)
    assert dup != text
    (good / "manifest.json").write_text(dup)
    with pytest.raises(BundleError, match="duplicate key 'temperature'"):
        load_bundle(good)


def test_duplicate_labels_key_is_refused(good: Path) -> None:
    raw = (good / "labels.json").read_text("utf-8")
    (good / "labels.json").write_text(raw.replace('"code":', '"code": "X", "code":', 1))
    _reseal(good, lambda r: None)
    with pytest.raises(BundleError, match="duplicate key 'code'"):
        load_bundle(good)


def test_class_count_mismatch_after_reseal(good: Path) -> None:
    """A 5-class classifier re-sealed into a 3-label bundle: refused at load."""
    (good / "classifier.onnx").write_bytes(classifier_onnx(n_classes=5))
    _reseal(good, lambda r: None)
    with pytest.raises(BundleError, match="does not match 3 classes"):
        Identifier.from_bundle(good)


@pytest.mark.parametrize(
    "bad",
    [None, 123, b"models/pushin-pill-edge", ["models"], 1.5, "", "a\0b"],
    ids=["none", "int", "bytes", "list", "float", "empty", "nul"],
)
def test_from_bundle_path_types(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="bundle path"):
        Identifier.from_bundle(bad)


class _BytesPath(os.PathLike):  # type: ignore[type-arg]
    def __fspath__(self) -> bytes:  # type: ignore[override]
        return b"models"


class _RaisingPath(os.PathLike):  # type: ignore[type-arg]
    def __fspath__(self) -> str:
        raise RuntimeError("boom")


@pytest.mark.parametrize("bad", [_BytesPath(), _RaisingPath()], ids=["bytes", "raises"])
def test_from_bundle_hostile_pathlike(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="bundle path"):
        Identifier.from_bundle(bad)


def test_identifier_needs_a_bundle() -> None:
    with pytest.raises(InvalidArgumentError, match="from_bundle"):
        Identifier("models/pushin-pill-edge")  # type: ignore[arg-type]


# -- reading before refusing: bounded memory, measured in a child process -------------------
_CHILD = r"""
import json, sys, time
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.errors import PillsnapError
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = hwm()
t0 = time.perf_counter()
try:
    load_bundle(sys.argv[1])
    outcome = "loaded"
except PillsnapError as exc:
    outcome = type(exc).__name__ + ": " + str(exc)
print(json.dumps({"peak_mb": hwm() - base, "s": time.perf_counter() - t0, "outcome": outcome}))
"""


def _child_load(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _zip_with_member(good: Path, dst: Path, name: str, size: int, noise: int = 0) -> Path:
    """``good`` zipped, with ``name`` replaced by ``size`` bytes: zeros (deflate ~1000:1)
    with ``noise`` random bytes at the start of each MiB (16 KiB: ~60:1, under the
    loader's zip-bomb ratio, so the member is inflated and hashed)."""
    rng = random.Random(0)
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(good.iterdir()):
            if p.name == name:
                with zf.open(name, "w", force_zip64=True) as fh:
                    for _ in range(size >> 20):
                        fh.write(rng.randbytes(noise) + bytes((1 << 20) - noise))
            else:
                zf.writestr(p.name, p.read_bytes())
    return dst


def test_inflating_member_with_wrong_hash_is_streamed_not_held(good: Path, tmp_path: Path) -> None:
    """A 64 MiB member (a ~1 MB zip) whose hash fails: refused with a constant few MB,
    not after holding it (a 1 GiB one cost +2.07 GB before)."""
    z = _zip_with_member(good, tmp_path / "inflate.zip", "detector.onnx", 64 << 20, 16 << 10)
    assert z.stat().st_size < 2_000_000
    r = _child_load(z)
    assert r["outcome"].startswith("BundleIntegrityError") and "sha256" in r["outcome"], r
    assert r["peak_mb"] < 40, r  # measured 3.6 MB; holding it would be >= 64 MB
    # Hashing is linear: ~1 s here on an idle 2-core box, 20 s at load average 19.
    assert r["s"] < 120, r


def test_huge_manifest_refused_before_parsing(good: Path) -> None:
    """A 24 MB manifest (padded JSON): refused from its size, not parsed (a 100 MB one
    cost +2.69 GB before the digest check)."""
    raw = (good / "manifest.json").read_bytes()
    pad = b'"x":"' + b"y" * (24 << 20) + b'",'
    (good / "manifest.json").write_bytes(raw[:1] + pad + raw[1:])
    r = _child_load(good)
    assert r["outcome"].startswith("BundleError") and "too large" in r["outcome"], r
    assert r["peak_mb"] < 16, r  # reading + parsing it would cost > 48 MB
    assert r["s"] < 60, r


def test_huge_labels_refused_before_parsing(good: Path) -> None:
    """labels.json of 24 MB with a correct seal: refused by its cap, never parsed."""
    (good / "labels.json").write_bytes(b" " * (24 << 20) + (good / "labels.json").read_bytes())
    _reseal(good, lambda r: None)
    r = _child_load(good)
    assert r["outcome"].startswith("BundleError") and "labels.json is too large" in r["outcome"]
    assert r["peak_mb"] < 16, r
    assert r["s"] < 60, r


def test_unlisted_member_is_refused_without_reading(
    good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An extra zip member is refused from the listing; no member but the manifest is read."""
    z = _zip_with_member(good, tmp_path / "extra.zip", "MODEL_CARD.md", 0)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("surprise.bin", b"x" * 1000)
    opened: list[str] = []
    real = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(getattr(name, "filename", name))
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(BundleIntegrityError, match=r"surprise\.bin"):
        load_bundle(z)
    assert opened == ["manifest.json"]


def test_zip_with_eocd_signature_in_comment_is_named_a_zip(good: Path, tmp_path: Path) -> None:
    """A comment holding ``PK\\x05\\x06`` fools zipfile.is_zipfile: still called a zip."""
    z = zip_bundle(good, tmp_path / "comment.zip")
    with zipfile.ZipFile(z, "a") as zf:
        zf.comment = b"note PK\x05\x06" + b"\0" * 18
    with pytest.raises(BundleError) as info:
        load_bundle(z)
    msg = str(info.value)
    assert "neither a bundle directory" not in msg and "zip" in msg, msg
