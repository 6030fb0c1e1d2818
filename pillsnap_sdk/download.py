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

import contextlib
import hashlib
import http.client
import os
import re
import socket
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .bundle.loader import MAX_BUNDLE_BYTES
from .errors import BundleError, BundleIntegrityError, InvalidArgumentError

__all__ = ["cache_dir", "fetch_bundle", "is_url"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_PIECE = 64 * 1024
#: Seconds without a byte before giving up, and for the whole download (status line and
#: headers included; enforced by :class:`_Watchdog`, not only between reads).
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
                f"{_where(url)}: downloaded bytes have sha256 {got}, expected {want}; the file on "
                "the server changed or was tampered with: nothing was cached"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, fd: int) -> str:
    """Copy the response into ``fd`` (closed on return); return the sha256 of the bytes.

    Every failure is a :class:`BundleError` naming the server as :func:`_where` shows it:
    a hostile or broken server must not surface as ``http.client`` internals
    (``BadStatusLine``, "got more than 100 headers", ``IncompleteRead``).
    """
    where = _where(url)
    h = hashlib.sha256()
    size = 0
    watch = _Watchdog(TOTAL_TIMEOUT_S)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            watch,
            _opener(watch).open(url, timeout=READ_TIMEOUT_S) as resp,
        ):
            length = resp.headers.get("Content-Length")
            declared = int(length) if length and length.isdigit() and len(length) <= 18 else None
            if declared is not None and declared > MAX_BUNDLE_BYTES:
                raise BundleError(f"{where}: {declared:,} bytes is larger than any bundle")
            # read1: return what one recv() brings, so no single read outlives the
            # watchdog's deadline by waiting to fill a large buffer.
            while chunk := resp.read1(_PIECE):
                size += len(chunk)
                if size > MAX_BUNDLE_BYTES:
                    raise BundleError(f"{where}: more than {MAX_BUNDLE_BYTES:,} bytes, refused")
                h.update(chunk)
                out.write(chunk)
            watch.raise_if_expired(where)
            if declared is not None and size < declared:
                raise BundleError(
                    f"{where}: the server closed the connection after {size:,} of "
                    f"{declared:,} bytes; try again"
                )
    except BundleError:
        raise
    except urllib.error.HTTPError as exc:
        raise BundleError(f"{where}: HTTP {exc.code} {_reason(exc.reason)}") from exc
    except urllib.error.URLError as exc:
        watch.raise_if_expired(where, exc)
        raise BundleError(f"{where}: download failed: {_reason(exc.reason)}") from exc
    except (http.client.HTTPException, OSError, ValueError) as exc:
        watch.raise_if_expired(where, exc)
        bad = "malformed HTTP reply: " if isinstance(exc, http.client.HTTPException) else ""
        raise BundleError(f"{where}: download failed: {bad}{_reason(exc)}") from exc
    return h.hexdigest()


def _where(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: never its user, password, query or fragment.

    Messages end up in logs and bug reports; a URL may carry ``user:password@`` or a signed
    query (``?X-Amz-Signature=...``) that must not travel with them.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # e.g. an unclosed IPv6 bracket or a port out of range
        return f"{url.split(':', 1)[0]}://<unparsable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path[:200]}"


def _reason(reason: object) -> str:
    """One line for a low-level error, never empty (``IncompleteRead`` prints oddly)."""
    if isinstance(reason, BaseException):
        text = str(reason).strip() or type(reason).__name__
        if isinstance(reason, http.client.HTTPException):
            text = f"{type(reason).__name__}: {text}"
    else:
        text = str(reason).strip() or "no reason given"
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:200] + "..."


class _Watchdog:
    """Shuts down every socket of one download when its overall deadline passes.

    Why: socket timeouts bound each *wait*, not the whole transfer, so a server that sends
    one byte just inside the read timeout, in the status line, the headers, a chunk size
    line or the body, would hold the caller almost forever. ``shutdown()`` on a duplicate
    of the socket wakes a blocked ``recv()`` (also inside TLS) with end-of-file in the
    download's own thread, which then reports the deadline instead of what it saw.
    """

    def __init__(self, total_s: float) -> None:
        self.total_s = total_s
        self.expired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(total_s, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:  # closed under the lock: _fire never shuts down a reused fd
            for s in self._socks:
                s.close()
            self._socks = []

    def track(self, sock: socket.socket) -> None:
        dup = sock.dup()
        with self._lock:
            self._socks.append(dup)
            late = self.expired
        if late:  # the deadline passed while this connection was being made
            _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for s in self._socks:
                _shutdown(s)

    def raise_if_expired(self, where: str, cause: BaseException | None = None) -> None:
        if self.expired:
            raise BundleError(
                f"{where}: download took over {self.total_s:g} s; the server is too slow "
                "or stalled, try again later"
            ) from cause

    def wrap(self, http_class: Any) -> Callable[..., http.client.HTTPConnection]:
        """``http_class`` as a factory whose connections report each new socket here."""

        def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            conn: http.client.HTTPConnection = http_class(*args, **kwargs)
            create = getattr(conn, "_create_connection", None)  # stable since Python 3.2
            if callable(create):

                def tracked(*a: Any, **k: Any) -> socket.socket:
                    sock: socket.socket = create(*a, **k)
                    self.track(sock)
                    return sock

                conn._create_connection = tracked  # type: ignore[attr-defined]
            return conn

        return make


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        sock.shutdown(socket.SHUT_RDWR)


class _Watched(urllib.request.AbstractHTTPHandler):
    """A handler whose connections report their sockets to one download's watchdog."""

    def __init__(self, watch: _Watchdog) -> None:
        super().__init__()
        self.watch = watch

    def do_open(self, http_class: Any, req: urllib.request.Request, **kw: Any) -> Any:
        return super().do_open(self.watch.wrap(http_class), req, **kw)


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
    pass


def _opener(watch: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's usual chain (proxies from the environment, redirects, HTTP errors) for
    http and https only: a redirect to ``ftp://`` or any other scheme is refused rather
    than fetched outside the watchdog."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _WatchedHTTP(watch),
        _WatchedHTTPS(watch),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener
