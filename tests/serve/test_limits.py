"""Each limit: 413 before the body is read, 408 for a stalled body, 503 + Retry-After."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pillsnap_sdk import Identifier, IdentifyResult
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.serve.limits import Busy, InferenceGate, _content_length
from pillsnap_sdk.serve.state import ServiceContext

from .live import Keys, Live, live_server, multipart, served, settings

MB = 1024 * 1024


def _read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def _open(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def test_413_from_content_length_before_the_body_is_sent(live: Live, keys: Keys) -> None:
    """Headers announce 50 MB (limit 1 MB); we send 1 KB and the answer comes anyway."""
    with _open(live.port) as s:
        s.sendall(
            b"POST /v1/identify HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Authorization: Bearer {keys.client}\r\nContent-Length: {50 * MB}\r\n\r\n".encode()
            + b"x" * 1024
        )
        status, head = _read_status(s)
    assert status == 413
    assert b'"PayloadTooLarge"' in head or b"application/json" in head


def test_413_for_chunked_body_once_it_passes_the_limit(live: Live, keys: Keys) -> None:
    """No Content-Length: counted as it arrives; we never send the final chunk."""
    with _open(live.port) as s:
        s.sendall(
            b"POST /v1/identify HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Authorization: Bearer {keys.client}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        head = (
            b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        s.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
        chunk = b"y" * (256 * 1024)
        try:
            for _ in range(6):  # 1.5 MB > 1 MB limit; the server may stop reading early
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass
        status, _ = _read_status(s)
    assert status == 413


def test_limit_counts_in_metrics_and_json_shape(live: Live, keys: Keys) -> None:
    body, ctype = multipart([("image", "a.png", "image/png", b"z" * (MB + 10))])
    r = live.request(
        "POST", "/v1/identify", body, {"Content-Type": ctype, "X-API-Key": keys.client}
    )
    assert r.status == 413
    assert r.json()["error"]["type"] == "PayloadTooLarge"


def test_408_when_the_body_stalls(tiny_bundle: Path) -> None:
    ctx = ServiceContext(settings(read_timeout_s=0.3), keys=None, holder=served(tiny_bundle))
    with live_server(ctx) as srv, _open(srv.port) as s:
        s.sendall(
            b"POST /v1/identify HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n--b\r\n"
        )
        status, _ = _read_status(s)
    assert status == 408


class BlockingIdentifier(Identifier):
    """The real identifier, but each call waits for ``release`` (bounded) so a test can hold
    inference slots deterministically instead of racing against a timer."""

    entered: threading.Semaphore
    release: threading.Event

    def identify(self, image: Any, **kw: Any) -> IdentifyResult:
        self.entered.release()
        assert self.release.wait(timeout=30), "test never released the identifier"
        return super().identify(image, **kw)


def blocking_identifier(path: Path) -> BlockingIdentifier:
    idf = BlockingIdentifier(load_bundle(path))
    idf.entered = threading.Semaphore(0)
    idf.release = threading.Event()
    return idf


@pytest.fixture
def blocking(tiny_bundle: Path) -> Iterator[BlockingIdentifier]:
    idf = blocking_identifier(tiny_bundle)
    yield idf
    idf.release.set()


def test_503_with_retry_after_when_queue_is_full(
    tiny_bundle: Path, blocking: BlockingIdentifier, two_pills: bytes
) -> None:
    ctx = ServiceContext(
        settings(max_concurrency=1, max_queue=1),
        keys=None,
        holder=served(tiny_bundle, blocking),
    )
    with live_server(ctx) as srv, ThreadPoolExecutor(2) as pool:
        first = pool.submit(srv.identify, two_pills)
        assert blocking.entered.acquire(timeout=20)  # 1 running
        second = pool.submit(srv.identify, two_pills)  # 1 queued
        for _ in range(400):  # bounded wait until the gate has admitted it
            if ctx.gate.admitted == 2:
                break
            threading.Event().wait(0.01)
        assert ctx.gate.admitted == 2
        third = srv.identify(two_pills)
        assert third.status == 503
        assert int(third.headers["retry-after"]) >= 1
        assert third.json()["error"]["type"] == "Busy"
        assert srv.request("GET", "/healthz").status == 200  # the loop stays free
        blocking.release.set()
        assert first.result(timeout=30).status == 200
        assert second.result(timeout=30).status == 200
    # afterwards the gate is empty again
    assert ctx.gate.admitted == 0


def test_gate_counts_and_releases() -> None:
    async def scenario() -> list[str]:
        gate = InferenceGate(concurrency=1, queue=1)
        events: list[str] = []
        hold = asyncio.Event()

        async def worker(name: str) -> None:
            try:
                async with gate.slot():
                    events.append(f"start {name}")
                    await hold.wait()
            except Busy as exc:
                events.append(f"busy {name} retry={exc.headers['Retry-After']}")

        a = asyncio.create_task(worker("a"))
        await asyncio.sleep(0)
        b = asyncio.create_task(worker("b"))
        await asyncio.sleep(0)
        await worker("c")  # refused at once: 1 running + 1 queued
        assert (gate.running, gate.admitted) == (1, 2)
        hold.set()
        await asyncio.gather(a, b)
        assert (gate.running, gate.admitted) == (0, 0)
        return events

    assert asyncio.run(scenario()) == ["start a", "busy c retry=1", "start b"]


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (b"1024", 1024),
        (b"0", 0),
        (b"1_0", None),  # int() took these three
        (b" 12 ", None),
        (b"-5", None),
        (b"\xd9\xa3", None),  # Arabic-Indic 3 in UTF-8
        (b"9" * 5000, None),  # int() raised a ValueError here; now refused before parsing
    ],
)
def test_content_length_is_ascii_digits_only(value: bytes, want: int | None) -> None:
    """A length that is not plain digits is ignored: the body is then counted as it comes."""
    assert _content_length({"headers": [(b"content-length", value)]}) == want
