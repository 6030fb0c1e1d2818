"""Read a bundle (directory or ``.zip``) into memory and verify it before anything runs.

Order matters: the manifest is read first (capped at 1 MiB), parsed strictly (no duplicate
keys, no NaN, no type coercion) and its digest checked; the file list must then match it
exactly *by name*, before any other file is read; each file is read with its sha256
checked while streaming. Only then does the caller build ONNX sessions *from those same
verified bytes* (no second read, no time-of-check gap). Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import BundleError, BundleIntegrityError, InvalidArgumentError, UnsupportedBundleError
from ..version import __version__, parse_semver
from .manifest import (
    LABELS_NAME,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    BundleManifest,
    LabelsFile,
    canonical_manifest_digest,
)
from .sources import BundleSource, DirSource, open_zip, read_verified

__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_LABELS_BYTES",
    "MAX_MANIFEST_BYTES",
    "Bundle",
    "load_bundle",
    "sha256_hex",
    "verify_files",
]

#: A bundle larger than this (uncompressed) is refused: protects against zip bombs.
MAX_BUNDLE_BYTES = 1 << 30
#: The manifest is a few KB; refusing a large one before parsing bounds JSON's memory.
MAX_MANIFEST_BYTES = 1 << 20
#: labels.json: ~200 bytes per class, so 16 MiB is far above any real class list.
MAX_LABELS_BYTES = 16 << 20


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


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load and verify a bundle directory or zip; raise a :class:`BundleError` subclass."""
    src = _as_path(path)
    try:
        st = src.stat()
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, EACCES on a parent...
        reason = getattr(exc, "strerror", None) or exc
        raise BundleError(f"cannot open bundle {_shown(src)}: {reason}") from exc
    if st is not None and stat.S_ISDIR(st.st_mode):
        return _load(DirSource(src, MAX_BUNDLE_BYTES))
    if (
        st is not None
        and stat.S_ISREG(st.st_mode)
        and (zipfile.is_zipfile(src) or _looks_like_zip(src))
    ):
        try:
            with open_zip(src, MAX_BUNDLE_BYTES) as source:
                return _load(source)
        except (zipfile.BadZipFile, zlib.error, struct.error, ValueError) as exc:
            # A flipped bit in a deflated member surfaces as zlib.error, not BadZipFile;
            # a zip comment holding "PK\x05\x06" hides the real end-of-directory record.
            raise BundleError(
                f"{src}: corrupt zip: {exc} (if the .zip has a comment, re-zip without one)"
            ) from exc
        except (OSError, EOFError, NotImplementedError, RuntimeError) as exc:
            raise BundleError(f"{src}: cannot read zip: {exc}") from exc
    if st is not None:
        raise BundleError(f"{_shown(src)} is neither a bundle directory nor a .zip bundle")
    raise BundleError(
        f"bundle not found: {_shown(src)} (pass --bundle / a bundle directory or .zip)"
    )


def _shown(src: Path) -> str:
    """The path for a message, its middle cut when long (a 5000-character name is noise)."""
    text = str(src)
    return text if len(text) <= 200 else f"{text[:90]}...{text[-90:]}"


def _as_path(path: object) -> Path:
    """Only text paths: ``None``, numbers, bytes and lists are argument errors."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"bundle path must be a str or os.PathLike, got {type(path).__name__}"
        )
    try:
        raw = os.fspath(path)
    except Exception as exc:  # a PathLike whose __fspath__ raises
        raise InvalidArgumentError(f"bundle path: {type(path).__name__} failed: {exc}") from exc
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise InvalidArgumentError(f"bundle path must be non-empty text, got {raw!r:.100}")
    return Path(raw)


def _looks_like_zip(path: Path) -> bool:
    """A local-file header at the start: still a zip even if ``is_zipfile`` is fooled."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _load(source: BundleSource) -> Bundle:
    src = source.where
    sizes = source.sizes()
    if MANIFEST_NAME not in sizes:
        raise BundleError(f"{src}: no {MANIFEST_NAME}; is this a pillsnap bundle?")
    try:
        manifest_bytes = read_verified(source, MANIFEST_NAME, None, MAX_MANIFEST_BYTES)
        manifest = parse_manifest(src, manifest_bytes)
        check_file_list(src, manifest, set(sizes))
        files = {MANIFEST_NAME: manifest_bytes}
        for name, want in sorted(manifest.files.items()):
            cap = MAX_LABELS_BYTES if name == LABELS_NAME else MAX_BUNDLE_BYTES
            files[name] = read_verified(source, name, want, cap)
    except OSError as exc:
        raise BundleError(f"{src}: cannot read bundle directory: {exc}") from exc
    return Bundle(source=src, manifest=manifest, labels=parse_labels(src, files), files=files)


def verify_files(src: Path, files: dict[str, bytes]) -> Bundle:
    """The same checks as :func:`load_bundle` on files already in memory (the writer's)."""
    if MANIFEST_NAME not in files:
        raise BundleError(f"{src}: no {MANIFEST_NAME}; is this a pillsnap bundle?")
    if len(files[MANIFEST_NAME]) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{src}: {MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES:,} bytes")
    manifest = parse_manifest(src, files[MANIFEST_NAME])
    check_file_list(src, manifest, set(files))
    for name, want in sorted(manifest.files.items()):
        if sha256_hex(files[name]) != want:
            raise BundleIntegrityError(
                f"{src}: {name} does not match its sha256 in the manifest (corrupt or "
                "tampered); download the bundle again"
            )
    return Bundle(source=src, manifest=manifest, labels=parse_labels(src, files), files=files)


def parse_manifest(src: Path, data: bytes) -> BundleManifest:
    """Versions first (a future bundle says "upgrade"), then strict schema, then digest."""
    raw = _parse_json(data, MANIFEST_NAME, src)
    if not isinstance(raw, dict):
        raise BundleError(f"{src}: {MANIFEST_NAME} must hold a JSON object")
    _check_versions(raw, src)
    try:
        # strict: "99" is not 99, 2.0 is not 2, true is not 1.
        manifest = BundleManifest.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise BundleError(f"{src}: invalid {MANIFEST_NAME}: {_short(exc)}") from exc
    if manifest.manifest_sha256 != canonical_manifest_digest(raw):
        raise BundleIntegrityError(
            f"{src}: {MANIFEST_NAME} was modified after packaging (digest mismatch); "
            "re-package the bundle with pillsnap-train or restore the original"
        )
    return manifest


def check_file_list(src: Path, manifest: BundleManifest, present: set[str]) -> None:
    """Exactly the listed files, and every model listed in ``files`` with its sha256."""
    expected = set(manifest.files) | {MANIFEST_NAME}
    if missing := sorted(expected - present):
        raise BundleIntegrityError(f"{src}: missing bundle file(s): {', '.join(missing)}")
    if extra := sorted(present - expected):
        raise BundleIntegrityError(
            f"{src}: unexpected file(s) not listed in the manifest: {', '.join(extra)}"
        )
    declared = [manifest.classifier] + ([manifest.detector] if manifest.detector else [])
    pairs = [(s.file, s.sha256) for s in declared] + [(v.file, v.sha256) for v in manifest.variants]
    for fname, digest in pairs:
        if manifest.files.get(fname) != digest:
            raise BundleIntegrityError(
                f"{src}: model {fname} is not listed in 'files' with the same sha256"
            )
    if LABELS_NAME not in manifest.files:
        raise BundleError(f"{src}: no {LABELS_NAME}")


def parse_labels(src: Path, files: dict[str, bytes]) -> LabelsFile:
    data = files[LABELS_NAME]
    if len(data) > MAX_LABELS_BYTES:
        raise BundleError(f"{src}: {LABELS_NAME} is larger than {MAX_LABELS_BYTES:,} bytes")
    _parse_json(data, LABELS_NAME, src)  # duplicate keys, NaN, depth
    try:
        return LabelsFile.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise BundleError(f"{src}: invalid {LABELS_NAME}: {_short(exc)}") from exc


def _check_versions(raw: dict[str, Any], src: Path) -> None:
    schema = raw.get("schema_version")
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
        raise UnsupportedBundleError(
            f"{src}: bundle schema {schema} is newer than this SDK reads ({SCHEMA_VERSION}); "
            "upgrade pillsnap"
        )
    need = raw.get("min_sdk_version")
    if isinstance(need, str):
        try:
            too_new = parse_semver(need) > parse_semver(__version__)
        except ValueError as exc:
            raise BundleError(f"{src}: bad min_sdk_version {need!r:.100}") from exc
        if too_new:
            raise UnsupportedBundleError(
                f"{src}: bundle needs pillsnap >= {need}, this is {__version__}; upgrade pillsnap"
            )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # The digest covers the parsed result, so a duplicate could hide an edit.
            raise ValueError(f"duplicate key {key!r:.100}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(data: bytes, name: str, src: Path) -> Any:
    try:
        return json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{src}: {name} is not valid UTF-8 JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # duplicates, NaN, 5000-digit ints, nesting
        raise BundleError(f"{src}: {name} is not acceptable JSON: {exc}") from exc


def _short(exc: ValidationError) -> str:
    errs = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errs[:3]]
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "; ".join(parts) + more
