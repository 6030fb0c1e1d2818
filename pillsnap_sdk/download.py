"""Fetch a bundle zip from a URL the caller pinned with its sha256, into a local cache.

Why a pinned hash: sites that host their own bundles need ``from_pretrained(URL)``, but a
URL alone says nothing about what arrives. The download is hashed while it streams,
bounded in size and time, written to a temporary file in the cache directory and only
moved into place (``os.replace``, atomic) when the sha256 matches, so the cache never
holds a partial or wrong file under its final name and two processes downloading at once
cannot corrupt each other. A cached file is re-hashed before every use.

This is the only place the SDK touches the network, and only when the caller asks for it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .bundle.loader import MAX_BUNDLE_BYTES
from .errors import BundleError, BundleIntegrityError, InvalidArgumentError

__all__ = ["cache_dir", "fetch_bundle", "is_url"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
#: Seconds without a byte before giving up, and for the whole download.
READ_TIMEOUT_S = 30.0
TOTAL_TIMEOUT_S = 600.0


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def cache_dir() -> Path:
    """``$PILLSNAP_HOME/bundles``; PILLSNAP_HOME defaults to ``$XDG_CACHE_HOME/pillsnap``."""
    home = os.environ.get("PILLSNAP_HOME")
    if home:
        return Path(home).expanduser() / "bundles"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "pillsnap" / "bundles"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch_bundle(url: str, sha256: str | None) -> Path:
    """Return the path of the cached, verified bundle zip for ``url``; download if needed.

    Raises :class:`InvalidArgumentError` without a valid sha256,
    :class:`BundleIntegrityError` when the bytes do not match it, and
    :class:`BundleError` for network failures, oversize or over-long downloads.
    """
    if not is_url(url):
        raise InvalidArgumentError(f"not an http(s) URL: {url[:200]!r}")
    want = (sha256 or "").strip().lower()
    if not _SHA256.match(want):
        raise InvalidArgumentError(
            "from_pretrained(URL) needs sha256=<64 hex digits> of the bundle zip, so what "
            f"arrives can be verified before use (got {sha256!r})"
        )
    folder = cache_dir()
    target = folder / f"{want}.zip"
    try:
        if target.is_file():
            if _file_sha256(target) == want:
                return target
            target.unlink()  # corrupted in the cache: fetch it again
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot use the bundle cache {folder}: {exc}") from exc
    _download(url, want, folder, target)
    return target


def _download(url: str, want: str, folder: Path, target: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", suffix=".zip", dir=folder)
    tmp = Path(tmp_name)
    try:
        got = _stream(url, fd)
        if got != want:
            raise BundleIntegrityError(
                f"{url}: downloaded bytes have sha256 {got}, expected {want}; the file on "
                "the server changed or was tampered with: nothing was cached"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, fd: int) -> str:
    """Copy the response into ``fd`` (closed on return); return the sha256 of the bytes."""
    h = hashlib.sha256()
    size = 0
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=READ_TIMEOUT_S) as resp,
        ):
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_BUNDLE_BYTES:
                raise BundleError(f"{url}: {int(length):,} bytes is larger than any bundle")
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > MAX_BUNDLE_BYTES:
                    raise BundleError(f"{url}: more than {MAX_BUNDLE_BYTES:,} bytes, refused")
                if time.monotonic() > deadline:
                    raise BundleError(f"{url}: download took over {TOTAL_TIMEOUT_S:.0f} s")
                h.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise BundleError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BundleError(f"{url}: download failed: {exc}") from exc
    return h.hexdigest()
