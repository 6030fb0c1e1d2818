"""API keys: the keys file, ``keygen``, and the constant-time check of a presented key.

The file stores only sha256 digests, so a leaked keys file does not leak keys. A presented
key is hashed and compared with *every* stored digest through :func:`hmac.compare_digest`
(no early exit), so response time does not tell how close a guess was. Keys are never
logged or echoed in error messages.

The keys file is read only when it is a regular file, and at most :data:`MAX_FILE_BYTES`
of it: ``--api-keys-file /dev/zero`` used to read forever (its size is reported as 0) and
a FIFO with no writer blocked start-up forever.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "MAX_FILE_BYTES",
    "KeyEntry",
    "KeyStore",
    "KeysFileError",
    "generate_key",
    "hash_key",
    "read_keys_file",
]

Role = Literal["client", "admin"]
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
#: Longer presented keys are refused without hashing (bounded work per request).
MAX_KEY_CHARS = 256
#: Largest keys file read (1 MiB, about 10,000 keys); a bigger one is refused.
MAX_FILE_BYTES = 1024 * 1024
#: O_NONBLOCK: opening a FIFO without a writer returns at once (then refused as not a
#: regular file) instead of blocking; no effect on regular files. Absent on Windows.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
)


class KeysFileError(ValueError):
    """The keys file is missing or has a malformed line (the message gives the line)."""


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: str
    digest: str
    role: Role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key(key_id: str, *, admin: bool = False) -> tuple[str, str]:
    """A new random key and its keys-file line ``ID SHA256HEX ROLE``."""
    if not _ID.match(key_id):
        raise KeysFileError(
            f"key ID {key_id!r} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    key = "psk_" + secrets.token_urlsafe(32)
    return key, f"{key_id} {hash_key(key)} {'admin' if admin else 'client'}"


class KeyStore:
    """The parsed keys file; :meth:`check` maps a presented key to its entry (or None)."""

    def __init__(self, entries: list[KeyEntry]) -> None:
        if not entries:
            raise KeysFileError("the keys file lists no keys: every request would be refused")
        self._entries = list(entries)

    @classmethod
    def from_file(cls, path: Path) -> KeyStore:
        try:
            text = read_keys_file(path).decode("utf-8")
        except OSError as exc:
            raise KeysFileError(f"cannot read keys file {path}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise KeysFileError(f"cannot read keys file {path}: not UTF-8 text ({exc})") from None
        return cls(parse_keys(text, str(path)))

    def check(self, presented: str) -> KeyEntry | None:
        """The entry whose digest matches ``presented``, compared in constant time."""
        if not presented or len(presented) > MAX_KEY_CHARS:
            return None
        digest = hash_key(presented).encode("ascii")
        found: KeyEntry | None = None
        for entry in self._entries:  # no early exit: same work whichever entry matches
            if hmac.compare_digest(digest, entry.digest.encode("ascii")):
                found = entry
        return found

    def __len__(self) -> int:
        return len(self._entries)


def read_keys_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most :data:`MAX_FILE_BYTES`.

    The file is opened first and checked with ``fstat`` on the open descriptor, so a path
    swapped for a device or FIFO between a check and the read is still refused.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
            raise KeysFileError(f"keys file {path} is {kind}, not a regular file")
        chunks: list[bytes] = []
        left = MAX_FILE_BYTES + 1  # one byte more than allowed tells "too big" from "at limit"
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    if left <= 0:
        raise KeysFileError(
            f"keys file {path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; "
            "is it really a keys file?"
        )
    return b"".join(chunks)


def parse_keys(text: str, source: str = "keys file") -> list[KeyEntry]:
    """Lines ``ID SHA256HEX [client|admin]``; blank lines and ``#`` comments are skipped."""
    entries: list[KeyEntry] = []
    seen: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source}:{n}"
        if len(parts) not in (2, 3):
            raise KeysFileError(f"{where}: expected 'ID SHA256HEX [ROLE]', got {len(parts)} fields")
        key_id, digest = parts[0], parts[1].lower()
        role = parts[2] if len(parts) == 3 else "client"
        if not _ID.match(key_id):
            raise KeysFileError(f"{where}: bad key ID {key_id!r}")
        if not _HEX.match(digest):
            raise KeysFileError(f"{where}: the second field must be 64 hex digits (a sha256)")
        if role not in ("client", "admin"):
            raise KeysFileError(f"{where}: role must be 'client' or 'admin', got {role!r}")
        if key_id in seen:
            raise KeysFileError(f"{where}: key ID {key_id!r} is listed twice")
        seen.add(key_id)
        entries.append(KeyEntry(key_id, digest, "admin" if role == "admin" else "client"))
    return entries


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (None when absent)."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None
