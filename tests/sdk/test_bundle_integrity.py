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

import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tinymodels import classifier_onnx, detector_onnx, make_bundle

from pillsnap_sdk import (
    BundleError,
    BundleIntegrityError,
    Identifier,
    UnsupportedBundleError,
)
from pillsnap_sdk.bundle import loader
from pillsnap_sdk.bundle.loader import load_bundle, verify_files
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
