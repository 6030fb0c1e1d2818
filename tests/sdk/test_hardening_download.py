"""Hostile bundle servers: ``fetch_bundle`` fails with a one-line :class:`BundleError`, in time.

Each test runs a one-shot raw-socket server on 127.0.0.1 that answers one request the way
a broken or malicious host would: garbage status line, too many headers, a body cut short,
or bytes trickled just inside the read timeout. Before the fix the first three leaked
``http.client`` exceptions (or a misleading integrity error) and the trickles held the
download until the server chose to stop. The module's timeouts are shrunk so each test
takes about a second.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pillsnap_sdk.download as download
from pillsnap_sdk.errors import BundleError

Reply = Callable[[socket.socket], None]
_NO_HASH = "0" * 64
#: Every test downloads into a fresh $PILLSNAP_HOME with no proxy (conftest ``home``).
pytestmark = pytest.mark.usefixtures("home")


@pytest.fixture
def serve_once() -> Iterator[Callable[[Reply], str]]:
    """``serve_once(reply) -> url``: accept one connection, read the request, ``reply``."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(reply: Reply) -> str:
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        lst.settimeout(10)
        listeners.append(lst)

        def run() -> None:
            try:
                conn, _ = lst.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                with contextlib.suppress(OSError):  # the client hung up on its deadline
                    reply(conn)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
        return f"http://127.0.0.1:{lst.getsockname()[1]}/b.zip"

    yield start
    for lst in listeners:
        with contextlib.suppress(OSError):
            lst.shutdown(socket.SHUT_RDWR)  # wakes a thread still waiting in accept()
        lst.close()
    for t in threads:
        t.join(timeout=15)


def _trickle(head: bytes, piece: bytes, times: int = 30, every_s: float = 0.3) -> Reply:
    """Send ``head``, then ``piece`` every ``every_s`` (inside the 1 s read timeout)."""

    def reply(conn: socket.socket) -> None:
        conn.sendall(head)
        for _ in range(times):
            time.sleep(every_s)
            conn.sendall(piece)

    return reply


def _fetch_error(url: str) -> tuple[BundleError, float]:
    t0 = time.monotonic()
    with pytest.raises(BundleError) as info:
        download.fetch_bundle(url, _NO_HASH)
    return info.value, time.monotonic() - t0


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        (b"HELLO\r\n\r\n", "malformed HTTP reply: BadStatusLine"),
        (
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
            "malformed HTTP reply: HTTPException: got more than 100 headers",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc", "after 3 of 1,000 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed HTTP"),
    ],
    ids=["status-line", "150-headers", "short-body", "bad-chunk"],
)
def test_malformed_reply_is_a_bundle_error(
    serve_once: Callable[[Reply], str], reply: bytes, needle: str, home: Path
) -> None:
    err, _ = _fetch_error(serve_once(lambda c: c.sendall(reply)))
    assert needle in str(err)
    assert "\n" not in str(err)
    assert [p.name for p in (home / "bundles").iterdir()] == []  # no partial file left


@pytest.mark.parametrize(
    "reply",
    [
        _trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", b"x"),
        _trickle(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n"),
        _trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"y"),  # the headers never end
        _trickle(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"0"),  # size line
    ],
    ids=["body", "chunked-body", "headers", "chunk-size-line"],
)
def test_trickling_server_hits_the_overall_deadline(
    serve_once: Callable[[Reply], str], reply: Reply, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte every 0.3 s never trips the 1 s read timeout; the 1 s total must still fire."""
    monkeypatch.setattr(download, "READ_TIMEOUT_S", 1.0)
    monkeypatch.setattr(download, "TOTAL_TIMEOUT_S", 1.0)
    err, took = _fetch_error(serve_once(reply))
    assert "download took over 1 s" in str(err)
    assert took < 3.0, f"deadline fired after {took:.1f} s"


def test_messages_never_show_credentials_or_query(serve_once: Callable[[Reply], str]) -> None:
    url = serve_once(lambda c: c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    err, _ = _fetch_error(url + "?X-Amz-Signature=t0ken#frag")
    assert str(err).startswith(f"{url}: HTTP 404")
    assert "t0ken" not in str(err) and "frag" not in str(err)
    # urllib takes user:password@ for part of the host name; the failure must not echo it
    err, _ = _fetch_error(url.replace("http://", "http://alice:s3cret@"))
    assert "alice" not in str(err) and "s3cret" not in str(err)


def test_unparsable_url_is_a_bundle_error() -> None:
    """``urlsplit`` refuses an unclosed IPv6 bracket with ValueError; no raw error escapes."""
    err, _ = _fetch_error("http://[::1/b.zip")
    assert "download failed" in str(err)


def test_where_keeps_host_port_and_path_only() -> None:
    assert download._where("https://u:p@h.example:8443/a/b.zip?s=1#f") == (
        "https://h.example:8443/a/b.zip"
    )
    assert download._where("http://[::1]:80/x") == "http://[::1]:80/x"
    assert download._where("http://h:99999/x") == "http://<unparsable URL>"
