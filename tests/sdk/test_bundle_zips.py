"""Hostile bundle zips (traversal, links, duplicates, bombs, corrupt streams), models whose
hashes are right but whose content is not, and ``pillsnap bundle verify`` as a real process.

Why apart from test_bundle_integrity.py: the same promise (refused before anything runs,
with a BundleError that says why) for the container and the model content.
"""

from __future__ import annotations

import io
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tinymodels import classifier_onnx, detector_onnx, make_bundle

from pillsnap_sdk import (
    BundleError,
    BundleIntegrityError,
    Identifier,
)
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.bundle.writer import zip_bundle

from .bundle_helpers import (
    BUNDLE_FILES,
    FORMS,
    HYPO,
    REPO,
    in_form,
    repackage,
    verify_cli,
)
from .bundle_tampers import (
    _edit_manifest,
    _set,
)


# -- hostile zips ------------------------------------------------------------------------------
def _zip_with(good: Path, dst: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(dst, "w") as zf:
        for p in sorted(good.iterdir()):
            zf.writestr(p.name, p.read_bytes())
        for info, data in extra:
            zf.writestr(info, data)
    return dst


def _symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    info.create_system = 3  # unix
    return info, target.encode()


HOSTILE_MEMBERS = {
    "dotdot": ([("../evil.txt", b"x")], "'..' refused"),
    "dotdot_nested": ([("sub/../../evil.txt", b"x")], "'..' refused"),
    "dotdot_backslash": ([("..\\evil.txt", b"x")], "'..' refused"),
    "absolute": ([("/etc/evil.txt", b"x")], "absolute path refused"),
    "absolute_backslash": ([("\\evil.txt", b"x")], "absolute path refused"),
    "drive_letter": ([("C:/evil.txt", b"x")], "absolute path refused"),
    "symlink": ([_symlink_member("link.md", "/etc/passwd")], "symlink, refused"),
    "symlink_over_card": ([], "symlink, refused"),  # built below: MODEL_CARD.md is a link
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MEMBERS))
def test_hostile_zip_member_is_refused(
    good: Path,
    tmp_path: Path,
    case: str,
    no_sessions: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Path traversal, absolute names and symlinks in a zip are refused by name, before
    any member is used (the loader never extracts to disk, this is defence in depth)."""
    extra, fragment = HOSTILE_MEMBERS[case]
    z = tmp_path / f"{case}.zip"
    if case == "symlink_over_card":
        with zipfile.ZipFile(z, "w") as zf:
            for p in sorted(good.iterdir()):
                if p.name == "MODEL_CARD.md":
                    info, data = _symlink_member(p.name, "/etc/passwd")
                    zf.writestr(info, data)
                else:
                    zf.writestr(p.name, p.read_bytes())
    else:
        _zip_with(good, z, extra)
    with pytest.raises(BundleIntegrityError, match=fragment):
        load_bundle(z)
    code, out = verify_cli(z, capsys)
    assert code == 1 and fragment in out, out


def test_duplicate_zip_member_is_refused(
    good: Path, tmp_path: Path, no_sessions: list[Any]
) -> None:
    """Two ``labels.json`` entries: which one would be verified and which one used?"""
    z = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _zip_with(good, z, [("labels.json", b'{"classes": []}')])
    with pytest.raises(BundleIntegrityError, match=r"duplicate zip member labels\.json"):
        load_bundle(z)


def test_too_many_zip_members(good: Path, tmp_path: Path, no_sessions: list[Any]) -> None:
    z = _zip_with(good, tmp_path / "many.zip", [(f"f{i}.txt", b"") for i in range(70)])
    with pytest.raises(BundleError, match="too many zip members"):
        load_bundle(z)


def _patch_central_sizes(data: bytes, member: str, size: int) -> bytes:
    """Rewrite the uncompressed size that the central directory claims for ``member``."""
    out = bytearray(data)
    pos = 0
    while (pos := out.find(b"PK\x01\x02", pos)) >= 0:
        name_len = struct.unpack_from("<H", out, pos + 28)[0]
        name = bytes(out[pos + 46 : pos + 46 + name_len]).decode()
        if name == member:
            struct.pack_into("<I", out, pos + 24, size)
            return bytes(out)
        pos += 4
    raise AssertionError(f"{member} not in central directory")


def test_zip_bomb_size_claim_is_refused_before_inflating(
    good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_sessions: list[Any]
) -> None:
    """A member claiming 2 GiB unpacked is refused from the directory, without reading it."""
    z = zip_bundle(good, tmp_path / "bomb.zip")
    z.write_bytes(_patch_central_sizes(z.read_bytes(), "detector.onnx", 0x7FFF_FFFF))
    reads: list[str] = []
    real_read = zipfile.ZipFile.read

    def spy(self: zipfile.ZipFile, name: Any, pwd: bytes | None = None) -> bytes:
        reads.append(str(name))
        return real_read(self, name, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "read", spy)
    with pytest.raises(BundleError, match="too large when unpacked"):
        load_bundle(z)
    assert reads == []


def test_corrupt_deflate_stream_is_a_bundle_error(
    good: Path, tmp_path: Path, no_sessions: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: a damaged deflate stream raised a bare ``zlib.error`` (and the CLI
    crashed with a traceback) instead of BundleError."""
    z = zip_bundle(good, tmp_path / "corrupt.zip")
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("classifier.onnx")
    data = bytearray(z.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    for i in range(8):
        data[start + 3 + i] ^= 0x55
    z.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupt zip"):
        load_bundle(z)
    code, out = verify_cli(z, capsys)
    assert code == 1 and "corrupt zip" in out


@settings(HYPO)
@given(
    position=st.floats(0.0, 1.0, exclude_max=True), xor=st.integers(1, 255), truncate=st.booleans()
)
def test_any_zip_damage_is_refused_or_harmless(
    tiny_bundle: Path, position: float, xor: int, truncate: bool
) -> None:
    """Flip any byte of the ``.zip`` (or cut it there): BundleError, or - when only zip
    metadata such as a timestamp changed - exactly the original verified files."""
    with tempfile.TemporaryDirectory() as tmp:
        z = zip_bundle(tiny_bundle, Path(tmp) / "b.zip")
        data = bytearray(z.read_bytes())
        at = int(position * len(data))
        if truncate:
            del data[at:]
        else:
            data[at] ^= xor
        z.write_bytes(bytes(data))
        try:
            bundle = load_bundle(z)
        except BundleError:
            return
    for name in BUNDLE_FILES:
        assert bundle.files[name] == (tiny_bundle / name).read_bytes()


# -- model content: hashes are right, the model is not ------------------------------------------
MODEL_CASES = {
    "garbage_classifier": (
        {"classifier.onnx": b"this is not an onnx model"},
        "classifier.onnx: onnxruntime cannot load the model",
    ),
    "empty_classifier": (
        {"classifier.onnx": b""},
        "classifier.onnx: onnxruntime cannot load the model",
    ),
    "truncated_detector": (
        {"detector.onnx": detector_onnx()[:200]},
        "detector.onnx: onnxruntime cannot load the model",
    ),
    "detector_as_classifier": (
        {"classifier.onnx": detector_onnx()},
        "input is named 'images', manifest says 'input'",
    ),
    "five_class_classifier": (
        {"classifier.onnx": classifier_onnx(n_classes=5)},
        "does not match 3 classes in labels.json",
    ),
    "wrong_classifier_size": (
        {"classifier.onnx": classifier_onnx(size=48)},
        "disagrees with the manifest",
    ),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_bad_model_with_correct_hashes(
    tiny_bundle: Path, tmp_path: Path, case: str, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-packaged with write_bundle, so integrity passes: the model itself is refused."""
    replace, fragment = MODEL_CASES[case]
    path = in_form(repackage(tiny_bundle, tmp_path / "bundle", replace), form)
    load_bundle(path)  # integrity is fine ...
    with pytest.raises(BundleError, match=fragment) as info:  # ... the model is not
        Identifier.from_bundle(path)
    assert not isinstance(info.value, BundleIntegrityError)
    code, out = verify_cli(path, capsys)
    assert code == 1 and "REFUSED" in out and fragment in out, out


def test_declared_size_disagrees_with_onnx(tmp_path: Path) -> None:
    """make_bundle(declared_size=...) writes a manifest that lies about the input size."""
    bundle = make_bundle(tmp_path / "liar", classifier_size=32, declared_size=40)
    with pytest.raises(BundleError, match="disagrees with the manifest"):
        Identifier.from_bundle(bundle)


# -- the CLI, once as a real process -----------------------------------------------------------
def test_verify_cli_subprocess(good: Path) -> None:
    """``python -m pillsnap_sdk.cli bundle verify``: 0 for good, 1 for tampered, says why."""

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pillsnap_sdk.cli", "bundle", "verify", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )

    ok = run(good)
    assert ok.returncode == 0 and ok.stdout.startswith("OK "), ok.stdout + ok.stderr
    _edit_manifest(_set("thresholds.unknown_threshold", 0.0), reseal=False)(good)
    bad = run(good)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "REFUSED" in bad.stdout and "modified after packaging" in bad.stdout
    assert "Traceback" not in bad.stderr


def test_zip_bytes_helper_roundtrip(good: Path) -> None:
    """Guard for the helpers above: zip_bundle output loads to the same files as the dir."""
    z = in_form(good, "zip")
    with zipfile.ZipFile(io.BytesIO(z.read_bytes())) as zf:
        assert sorted(zf.namelist()) == list(BUNDLE_FILES)
    assert load_bundle(z).files == load_bundle(good).files
