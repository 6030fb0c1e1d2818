"""Where bundle bytes come from: a directory or a ``.zip``, listed before anything is read.

Why listing and reading are separate: the loader decides from names and sizes alone
(unlisted files, caps, zip slip, links, pipes) and then reads each file with its hash
checked *while streaming* (:func:`read_verified`), so a member that inflates to 1 GiB and
fails its hash costs a constant few MB, not 2 GB, before it is refused.
"""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from ..errors import BundleError, BundleIntegrityError
from .manifest import MANIFEST_NAME

__all__ = ["MAX_FILES", "BundleSource", "DirSource", "ZipSource", "read_verified"]

MAX_FILES = 64
_CHUNK = 1 << 20


class BundleSource(Protocol):
    """Named files with their sizes; ``open`` gives a fresh binary stream each time."""

    where: Path

    def sizes(self) -> dict[str, int]: ...

    def open(self, name: str) -> IO[bytes]: ...


class DirSource:
    """Regular files of a bundle directory (symlinks, pipes and devices are refused)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.where = root
        self._sizes = self._scan(root, max_bytes)

    @staticmethod
    def _scan(root: Path, max_bytes: int) -> dict[str, int]:
        # The manifest is looked for *before* walking, so ``--bundle ~`` fails at once.
        if not (root / MANIFEST_NAME).is_file():
            raise BundleError(f"{root}: no {MANIFEST_NAME}; is this a pillsnap bundle?")
        sizes: dict[str, int] = {}
        total = 0
        try:
            entries: list[Path] = []
            for p in root.rglob("*"):
                entries.append(p)
                if len(entries) > 4 * MAX_FILES:
                    raise BundleError(f"{root}: too many entries for a bundle directory")
            for p in sorted(entries):
                rel = p.relative_to(root).as_posix()
                if p.is_symlink():
                    raise BundleIntegrityError(
                        f"{root}: symlinks are not allowed in bundles: {rel}"
                    )
                if p.is_dir():
                    continue
                if not p.is_file():  # read_bytes() on a named pipe blocks forever
                    raise BundleIntegrityError(f"{root}: not a regular file, refused: {rel}")
                size = p.stat().st_size
                total += size
                if total > max_bytes or len(sizes) >= MAX_FILES:
                    raise BundleError(f"{root}: bundle too large (> {max_bytes} bytes or files)")
                sizes[rel] = size
        except OSError as exc:
            raise BundleError(f"{root}: cannot read bundle directory: {exc}") from exc
        return sizes

    def sizes(self) -> dict[str, int]:
        return dict(self._sizes)

    def open(self, name: str) -> IO[bytes]:
        path = self.where / name
        if path.is_symlink() or not path.is_file():  # swapped since the scan
            raise BundleIntegrityError(f"{self.where}: {name} changed while loading")
        return path.open("rb")


class ZipSource:
    """Members of a ``.zip`` bundle, checked by name and declared size, never extracted."""

    def __init__(self, zf: zipfile.ZipFile, where: Path, max_bytes: int) -> None:
        self.where = where
        self._zf = zf
        infos = zf.infolist()
        if len(infos) > MAX_FILES:
            raise BundleError(f"{where}: too many zip members ({len(infos)})")
        if sum(i.file_size for i in infos) > max_bytes:
            raise BundleError(f"{where}: bundle too large when unpacked")
        prefix = _common_root([i.filename for i in infos if not i.is_dir()])
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            _check_member(info, where)
            if info.is_dir():
                continue
            name = info.filename[len(prefix) :]
            if name in self._infos:
                raise BundleIntegrityError(f"{where}: duplicate zip member {name}")
            self._infos[name] = info

    def sizes(self) -> dict[str, int]:
        return {name: info.file_size for name, info in self._infos.items()}

    def open(self, name: str) -> IO[bytes]:
        return self._zf.open(self._infos[name])


@contextmanager
def open_zip(path: Path, max_bytes: int) -> Iterator[ZipSource]:
    with zipfile.ZipFile(path) as zf:
        yield ZipSource(zf, path, max_bytes)


def read_verified(source: BundleSource, name: str, sha256: str | None, cap: int) -> bytes:
    """Read one file, refusing past ``cap`` bytes or on a hash mismatch.

    With a known ``sha256`` the file is first hashed while streaming (constant memory), so
    a wrong file is refused before it is held in memory; it is then read once into memory
    and hashed again, so the bytes returned are exactly the bytes verified.
    """
    declared = source.sizes().get(name, 0)
    if declared > cap:
        raise BundleError(f"{source.where}: {name} is too large ({declared:,} > {cap:,} bytes)")
    if sha256 is not None and _stream(source, name, cap, None) != sha256:
        raise _mismatch(source.where, name)
    buf = io.BytesIO()
    digest = _stream(source, name, cap, buf)
    if sha256 is not None and digest != sha256:
        raise _mismatch(source.where, name)  # changed between the two reads
    return buf.getvalue()  # BytesIO hands over its buffer without another copy


def _stream(source: BundleSource, name: str, cap: int, sink: io.BytesIO | None) -> str:
    """sha256 of one file read in 1 MiB chunks (kept in ``sink`` if given), capped."""
    digest = hashlib.sha256()
    size = 0
    with source.open(name) as fh:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise BundleError(f"{source.where}: {name} is larger than {cap:,} bytes")
            digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
    return digest.hexdigest()


def _mismatch(where: Path, name: str) -> BundleIntegrityError:
    return BundleIntegrityError(
        f"{where}: {name} does not match its sha256 in the manifest (corrupt or "
        "tampered); download the bundle again"
    )


#: A member larger than this that deflates better than :data:`BOMB_MAX_RATIO` : 1 is refused.
BOMB_MIN_BYTES = 16 << 20
BOMB_MAX_RATIO = 100


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
    ratio = info.file_size / max(1, info.compress_size)
    if info.file_size > BOMB_MIN_BYTES and ratio > BOMB_MAX_RATIO:
        # ONNX weights deflate ~1.1:1 and JSON ~10:1; a 919 KB member that unpacks to
        # 900 MB took 42 s of inflating and hashing before its hash refused it.
        raise BundleIntegrityError(
            f"{path}: zip member {name!r:.100} unpacks {ratio:,.0f}x ({info.file_size:,} "
            "bytes): refused as a zip bomb; a bundle's files barely compress"
        )


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
