"""Read a bundle (directory or ``.zip``) into memory and verify it before anything runs.

Order matters: every file is read into memory once, the manifest digest and each file's
sha256 are checked, the file list must match exactly, and only then does the caller build
ONNX sessions *from those same verified bytes* (no second read, no time-of-check gap).
Nothing is unpickled; JSON is parsed by pydantic with ``extra="forbid"``.
"""

from __future__ import annotations

import hashlib
import json
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from ..errors import BundleError, BundleIntegrityError, UnsupportedBundleError
from ..version import __version__, parse_semver
from .manifest import (
    LABELS_NAME,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    BundleManifest,
    LabelsFile,
    canonical_manifest_digest,
)

__all__ = ["MAX_BUNDLE_BYTES", "Bundle", "load_bundle", "sha256_hex"]

#: A bundle larger than this (uncompressed) is refused: protects against zip bombs.
MAX_BUNDLE_BYTES = 1 << 30
_MAX_FILES = 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle held in memory."""

    source: Path
    manifest: BundleManifest
    labels: LabelsFile
    files: dict[str, bytes]

    def model_bytes(self, file: str) -> bytes:
        return self.files[file]


def load_bundle(path: str | Path) -> Bundle:
    """Load and verify a bundle directory or zip; raise a :class:`BundleError` subclass."""
    src = Path(path)
    if src.is_dir():
        files = _read_dir(src)
    elif src.is_file() and zipfile.is_zipfile(src):
        files = _read_zip(src)
    elif src.exists():
        raise BundleError(f"{src} is neither a bundle directory nor a .zip bundle")
    else:
        raise BundleError(f"bundle not found: {src} (pass --bundle / a bundle directory or .zip)")
    return verify_files(src, files)


def verify_files(src: Path, files: dict[str, bytes]) -> Bundle:
    """Check manifest schema/version, digests and the file list of in-memory bundle files."""
    if MANIFEST_NAME not in files:
        raise BundleError(f"{src}: no {MANIFEST_NAME}; is this a pillsnap bundle?")
    raw = _parse_json(files[MANIFEST_NAME], MANIFEST_NAME, src)
    if not isinstance(raw, dict):
        raise BundleError(f"{src}: {MANIFEST_NAME} must hold a JSON object")
    _check_versions(raw, src)
    try:
        manifest = BundleManifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{src}: invalid {MANIFEST_NAME}: {_short(exc)}") from exc

    digest = canonical_manifest_digest(raw)
    if manifest.manifest_sha256 != digest:
        raise BundleIntegrityError(
            f"{src}: {MANIFEST_NAME} was modified after packaging (digest mismatch); "
            "re-package the bundle with pillsnap-train or restore the original"
        )
    expected = set(manifest.files) | {MANIFEST_NAME}
    present = set(files)
    if missing := sorted(expected - present):
        raise BundleIntegrityError(f"{src}: missing bundle file(s): {', '.join(missing)}")
    if extra := sorted(present - expected):
        raise BundleIntegrityError(
            f"{src}: unexpected file(s) not listed in the manifest: {', '.join(extra)}"
        )
    for name, want in sorted(manifest.files.items()):
        if sha256_hex(files[name]) != want:
            raise BundleIntegrityError(
                f"{src}: {name} does not match its sha256 in the manifest (corrupt or "
                "tampered); download the bundle again"
            )
    declared = [manifest.classifier] + ([manifest.detector] if manifest.detector else [])
    pairs = [(s.file, s.sha256) for s in declared] + [(v.file, v.sha256) for v in manifest.variants]
    for fname, digest in pairs:
        if manifest.files.get(fname) != digest:
            raise BundleIntegrityError(
                f"{src}: model {fname} is not listed in 'files' with the same sha256"
            )
    if LABELS_NAME not in files:
        raise BundleError(f"{src}: no {LABELS_NAME}")
    try:
        labels = LabelsFile.model_validate(_parse_json(files[LABELS_NAME], LABELS_NAME, src))
    except ValidationError as exc:
        raise BundleError(f"{src}: invalid {LABELS_NAME}: {_short(exc)}") from exc
    return Bundle(source=src, manifest=manifest, labels=labels, files=files)


def _check_versions(raw: dict[str, Any], src: Path) -> None:
    schema = raw.get("schema_version")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise UnsupportedBundleError(
            f"{src}: bundle schema {schema} is newer than this SDK reads ({SCHEMA_VERSION}); "
            "upgrade pillsnap"
        )
    need = raw.get("min_sdk_version")
    if isinstance(need, str):
        try:
            too_new = parse_semver(need) > parse_semver(__version__)
        except ValueError as exc:
            raise BundleError(f"{src}: bad min_sdk_version {need!r}") from exc
        if too_new:
            raise UnsupportedBundleError(
                f"{src}: bundle needs pillsnap >= {need}, this is {__version__}; upgrade pillsnap"
            )


def _parse_json(data: bytes, name: str, src: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{src}: {name} is not valid UTF-8 JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # 5000-digit ints, absurdly deep nesting
        raise BundleError(f"{src}: {name} is not acceptable JSON: {exc}") from exc


def _short(exc: ValidationError) -> str:
    errs = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errs[:3]]
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "; ".join(parts) + more


def _read_dir(root: Path) -> dict[str, bytes]:
    """Read every regular file under ``root``; refuse links, pipes, devices and huge trees.

    The manifest is looked for *before* walking, so pointing ``--bundle`` at a home or
    root directory fails at once instead of listing the whole file system; and only
    regular files are read, because ``read_bytes()`` on a named pipe blocks forever.
    """
    if not (root / MANIFEST_NAME).is_file():
        raise BundleError(f"{root}: no {MANIFEST_NAME}; is this a pillsnap bundle?")
    files: dict[str, bytes] = {}
    total = 0
    try:
        entries: list[Path] = []
        for p in root.rglob("*"):
            entries.append(p)
            if len(entries) > 4 * _MAX_FILES:
                raise BundleError(f"{root}: too many entries for a bundle directory")
        for p in sorted(entries):
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                raise BundleIntegrityError(f"{root}: symlinks are not allowed in bundles: {rel}")
            if p.is_dir():
                continue
            if not p.is_file():
                raise BundleIntegrityError(f"{root}: not a regular file, refused: {rel}")
            total += p.stat().st_size
            if total > MAX_BUNDLE_BYTES or len(files) >= _MAX_FILES:
                raise BundleError(f"{root}: bundle too large (> {MAX_BUNDLE_BYTES} bytes or files)")
            files[rel] = p.read_bytes()
    except OSError as exc:
        raise BundleError(f"{root}: cannot read bundle directory: {exc}") from exc
    return files


def _read_zip(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > _MAX_FILES:
                raise BundleError(f"{path}: too many zip members ({len(infos)})")
            if sum(i.file_size for i in infos) > MAX_BUNDLE_BYTES:
                raise BundleError(f"{path}: bundle too large when unpacked")
            names = [i.filename for i in infos if not i.is_dir()]
            prefix = _common_root(names)
            for info in infos:
                _check_member(info, path)
                if info.is_dir():
                    continue
                name = info.filename[len(prefix) :]
                if name in files:
                    raise BundleIntegrityError(f"{path}: duplicate zip member {name}")
                files[name] = zf.read(info)
    except (zipfile.BadZipFile, zlib.error, struct.error) as exc:
        # A flipped bit in a deflated member surfaces as zlib.error, not BadZipFile.
        raise BundleError(f"{path}: corrupt zip: {exc}") from exc
    except ValueError as exc:  # e.g. a member name that is not valid UTF-8
        raise BundleError(f"{path}: corrupt zip: {exc}") from exc
    except (OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise BundleError(f"{path}: cannot read zip: {exc}") from exc
    return files


def _check_member(info: zipfile.ZipInfo, path: Path) -> None:
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise BundleIntegrityError(f"{path}: zip member with absolute path refused: {name!r}")
    if ".." in pure.parts:
        raise BundleIntegrityError(f"{path}: zip member with '..' refused: {name!r}")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise BundleIntegrityError(f"{path}: zip member is a symlink, refused: {name!r}")


def _common_root(names: list[str]) -> str:
    """A zip made from ``bundle-dir/`` stores ``bundle-dir/manifest.json``: strip that root."""
    if MANIFEST_NAME in names:
        return ""
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(roots) == 1 and all("/" in n for n in names):
        root = roots.pop() + "/"
        if root + MANIFEST_NAME in names:
            return root
    return ""
