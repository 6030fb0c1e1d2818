"""Tampered, truncated, hostile and future bundles are refused before anything runs.

Why: a bundle is code-adjacent - its thresholds decide "identified" vs "unknown" for a
medicine. A flipped byte, a swapped label file or an edited threshold must never load
silently, and a malicious ``.zip`` must not write outside its folder or exhaust memory.
Integrity cases (hashes, file list, manifest digest, versions, zip members) must be
refused *before* an onnxruntime session exists: the ``no_sessions`` fixture fails the test
if ``onnxruntime.InferenceSession`` is even called. Model-content cases (garbage ONNX with
correct hashes, wrong input shape) need a session to be detected and are refused with
:class:`BundleError` right after.

Every refused case is also run through ``pillsnap bundle verify`` (exit 1, says why).

Note what is *not* promised: integrity, not authenticity. Someone who edits a file and
recomputes every hash produces a bundle that loads (see
``test_resealed_bundle_is_accepted_integrity_not_authenticity``); sign the zip when the
distribution channel is untrusted.
"""

from __future__ import annotations

import os
import shutil
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pillsnap_sdk import (
    BundleError,
    BundleIntegrityError,
    Identifier,
)
from pillsnap_sdk.bundle import loader
from pillsnap_sdk.bundle.loader import load_bundle, verify_files

from .bundle_helpers import (
    BUNDLE_FILES,
    FORMS,
    HYPO,
    in_form,
    rehash,
    verify_cli,
)
from .bundle_tampers import (
    TAMPERS,
    Tamper,
    _edit_labels,
)


# -- the good bundle ----------------------------------------------------------------------------
def test_file_list_is_what_these_tests_cover(tiny_bundle: Path) -> None:
    """If make_bundle grows a file, the flip tests below must learn about it."""
    assert tuple(sorted(p.name for p in tiny_bundle.iterdir())) == BUNDLE_FILES


@pytest.mark.parametrize("form", FORMS)
def test_good_bundle_verifies(good: Path, form: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = in_form(good, form)
    assert load_bundle(path).manifest.name == "tiny-test"
    code, out = verify_cli(path, capsys)
    assert code == 0 and out.startswith("OK "), out


def test_zip_with_single_root_folder_is_accepted(good: Path, tmp_path: Path) -> None:
    """``zip -r tiny.zip tiny/`` stores ``tiny/manifest.json``: that root is stripped."""
    z = tmp_path / "rooted.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(good.iterdir()):
            zf.writestr(f"tiny/{p.name}", p.read_bytes())
    assert set(load_bundle(z).files) == set(BUNDLE_FILES)


# -- flipped bytes ----------------------------------------------------------------------------
def _offsets(size: int) -> dict[str, int]:
    return {"first": 0, "middle": size // 2, "last": size - 1}


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("name", BUNDLE_FILES)
@pytest.mark.parametrize("form", FORMS)
def test_flipped_byte_is_refused(
    good: Path,
    name: str,
    where: str,
    form: str,
    no_sessions: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Any byte of any file, XOR 0xFF: refused with the file named; no session built."""
    target = good / name
    data = bytearray(target.read_bytes())
    data[_offsets(len(data))[where]] ^= 0xFF
    target.write_bytes(bytes(data))
    path = in_form(good, form)
    if name == "manifest.json":
        # Mangled JSON, a forbidden key, a changed value: all refused, by different rules.
        with pytest.raises(BundleError, match=r"manifest\.json"):
            load_bundle(path)
    else:
        with pytest.raises(BundleIntegrityError, match=f"{name} does not match its sha256"):
            load_bundle(path)
    code, out = verify_cli(path, capsys)
    assert code == 1 and f"REFUSED {path}" in out and name in out, out


@settings(HYPO)
@given(
    name=st.sampled_from(BUNDLE_FILES),
    position=st.floats(0.0, 1.0, exclude_max=True),
    xor=st.integers(1, 255),
)
def test_any_flip_is_refused_or_harmless(
    tiny_bundle: Path, name: str, position: float, xor: int
) -> None:
    """Property over every offset and every bit pattern, through the loader's verifier.

    Non-manifest files: always refused. The manifest is hashed as canonical JSON, so a
    flip that only turns whitespace into other whitespace (' ' -> '\\t') may load - but
    then it must be the *same* manifest; any change of meaning is refused.
    """
    files = {n: (tiny_bundle / n).read_bytes() for n in BUNDLE_FILES}
    original = verify_files(tiny_bundle, dict(files)).manifest
    data = bytearray(files[name])
    data[int(position * len(data))] ^= xor
    files[name] = bytes(data)
    if name != "manifest.json":
        with pytest.raises(BundleIntegrityError, match=name):
            verify_files(tiny_bundle, files)
        return
    try:
        loaded = verify_files(tiny_bundle, files)
    except BundleError:
        return
    assert loaded.manifest == original


@pytest.mark.parametrize(
    ("tamper", "form"),
    [pytest.param(t, f, id=f"{t.name}-{f}") for t in TAMPERS for f in t.forms],
)
def test_tampered_bundle_is_refused(
    good: Path,
    tamper: Tamper,
    form: str,
    no_sessions: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tamper.apply(good)
    path = in_form(good, form)
    with pytest.raises(tamper.error) as info:
        load_bundle(path)
    assert tamper.fragment in str(info.value)
    assert str(path) in str(info.value), "the message should name the bundle"
    with pytest.raises(tamper.error):
        Identifier.from_bundle(path)
    code, out = verify_cli(path, capsys)
    assert code == 1, out
    assert f"REFUSED {path}" in out and tamper.fragment in out, out


def test_symlinked_file_in_directory_is_refused(
    good: Path, tmp_path: Path, no_sessions: list[Any]
) -> None:
    """A symlink could point the verified name at a file that changes after the check."""
    outside = tmp_path / "outside.md"
    shutil.move(good / "MODEL_CARD.md", outside)
    os.symlink(outside, good / "MODEL_CARD.md")
    with pytest.raises(BundleIntegrityError, match="symlinks are not allowed"):
        load_bundle(good)


def test_named_pipe_in_directory_is_refused_not_hung(good: Path, no_sessions: list[Any]) -> None:
    """Regression: ``read_bytes()`` on a FIFO blocks forever, so ``bundle verify`` hung."""
    os.mkfifo(good / "extra.bin")
    result: dict[str, BaseException] = {}

    def load() -> None:
        try:
            load_bundle(good)
        except BaseException as exc:
            result["error"] = exc

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "load_bundle blocked on a named pipe"
    assert isinstance(result.get("error"), BundleIntegrityError)
    assert "not a regular file, refused: extra.bin" in str(result["error"])


def test_wrong_directory_fails_fast(tmp_path: Path, no_sessions: list[Any]) -> None:
    """``--bundle ~`` by mistake: refused from the missing manifest, without walking the
    tree (here 2,000 files; a home directory would take minutes to list)."""
    home = tmp_path / "home"
    for i in range(20):
        sub = home / f"d{i}"
        sub.mkdir(parents=True)
        for j in range(100):
            (sub / f"f{j}.txt").write_bytes(b"")
    walked: list[Path] = []
    real = Path.rglob

    def spy(self: Path, pattern: str) -> Any:
        walked.append(self)
        return real(self, pattern)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "rglob", spy)
        with pytest.raises(BundleError, match=r"no manifest\.json"):
            load_bundle(home)
    assert walked == []


def test_directory_with_too_many_entries(good: Path, no_sessions: list[Any]) -> None:
    for i in range(300):
        (good / f"junk{i}.txt").write_bytes(b"")
    with pytest.raises(BundleError, match="too many entries"):
        load_bundle(good)


def test_unreadable_file_is_a_bundle_error(
    good: Path, monkeypatch: pytest.MonkeyPatch, no_sessions: list[Any]
) -> None:
    """EACCES/EIO while reading a member: BundleError, not a bare OSError (simulated,
    because the test may run as root, who can read a chmod-000 file)."""
    real = Path.open

    def failing(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "labels.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", failing)
    with pytest.raises(BundleError, match=r"cannot read bundle directory.*Permission denied"):
        load_bundle(good)


@pytest.mark.parametrize("form", FORMS)
def test_oversized_bundle_is_refused(
    good: Path, form: str, monkeypatch: pytest.MonkeyPatch, no_sessions: list[Any]
) -> None:
    """The unpacked-size cap (1 GiB) applies to both forms; lowered here to stay fast."""
    path = in_form(good, form)
    monkeypatch.setattr(loader, "MAX_BUNDLE_BYTES", 1000)
    with pytest.raises(BundleError, match="too large"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("path_kind", "fragment"),
    [("missing", "bundle not found"), ("plain_file", "neither a bundle directory nor a .zip")],
)
def test_not_a_bundle(
    tmp_path: Path, path_kind: str, fragment: str, no_sessions: list[Any]
) -> None:
    path = tmp_path / "thing.zip"
    if path_kind == "plain_file":
        path.write_bytes(b"PK but not really a zip")
    with pytest.raises(BundleError, match=fragment):
        load_bundle(path)


def test_resealed_bundle_is_accepted_integrity_not_authenticity(good: Path) -> None:
    """Documented limit: hashes catch corruption and casual edits, not a forger who
    recomputes them. This test pins that behaviour so docs/reliability.md stays true."""
    _edit_labels(good)
    rehash(good)
    bundle = load_bundle(good)
    assert bundle.labels.classes[0].name == "blue pill"
