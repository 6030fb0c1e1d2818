"""Slow clients: the whole-body deadline, the header deadline and the connection limit.

A client sending one byte just inside ``--read-timeout-s`` used to hold its request open
for as long as it liked, a client that connected and sent nothing (or trickled headers)
held its connection forever, and uvicorn had no connection limit. These tests run the
service under the production uvicorn configuration (:func:`uvicorn_config`) on 127.0.0.1
with timeouts shrunk to a second or less; every socket wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from pillsnap_sdk.serve.app import create_app
from pillsnap_sdk.serve.limits import BodyLimitMiddleware
from pillsnap_sdk.serve.reload import BundleHolder
from pillsnap_sdk.serve.server import KEEP_ALIVE_S, HeadDeadlineH11, uvicorn_config
from pillsnap_sdk.serve.settings import (
    add_serve_arguments,
    settings_from_args,
)
from pillsnap_sdk.serve.state import ServiceContext

from .live import multipart, served, settings


@pytest.fixture(scope="module")
def holder(tiny_bundle: Path) -> BundleHolder:
    return served(tiny_bundle)


@contextmanager
def production_server(ctx: ServiceContext) -> Iterator[int]:
    """``create_app(ctx)`` under :func:`uvicorn_config` on 127.0.0.1:<free port>."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(create_app(ctx), ctx.settings, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def _connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _read_reply(s: socket.socket) -> bytes:
    """Everything until the peer closes or the declared body is in (bounded by s's timeout)."""
    data = b""
    while True:
        try:
            piece = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not piece:
            return data
        data += piece
        head, sep, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            length = line.lower().startswith(b"content-length:")
            if sep and length and len(body) >= int(line.split(b":")[1]):
                return data


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def _trickled_upload(port: int, every_s: float, pieces: int) -> tuple[bytes, float]:
    """POST a multipart body whose tail arrives one byte per ``every_s``; (reply, seconds)."""
    body, ctype = multipart([("image", "a.png", "image/png", b"\x89PNG" + b"z" * 64)])
    head = (
        f"POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    cut = len(body) - pieces
    t0 = time.monotonic()
    with _connect(port) as s:
        s.sendall(head + body[:cut])
        try:
            for i in range(cut, len(body)):
                time.sleep(every_s)
                s.sendall(body[i : i + 1])
        except OSError:
            pass  # the server answered and closed
        return _read_reply(s), time.monotonic() - t0


def test_trickled_body_gets_408_at_the_whole_body_deadline(holder: BundleHolder) -> None:
    """One byte per 0.3 s never trips the 1 s read timeout; the 1.5 s body deadline does."""
    ctx = ServiceContext(settings(read_timeout_s=1.0, body_timeout_s=1.5), keys=None, holder=holder)
    with production_server(ctx) as port:
        reply, took = _trickled_upload(port, every_s=0.3, pieces=30)  # 9 s if not cut off
    assert _status(reply) == 408, reply[:200]
    assert b"not complete after 1.5 s" in reply
    assert took < 4.0


def test_a_prompt_upload_in_pieces_still_succeeds(holder: BundleHolder, two_pills: bytes) -> None:
    ctx = ServiceContext(settings(read_timeout_s=1.0, body_timeout_s=3.0), keys=None, holder=holder)
    body, ctype = multipart([("image", "a.png", "image/png", two_pills)])
    head = (
        f"POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with production_server(ctx) as port, _connect(port, timeout=30) as s:
        s.sendall(head)
        third = len(body) // 3 + 1
        for i in range(0, len(body), third):
            time.sleep(0.2)
            s.sendall(body[i : i + third])
        reply = _read_reply(s)
        assert _status(reply) == 200, reply[:300]
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive still works
        assert _status(_read_reply(s)) == 200


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHo"], ids=["idle", "partial"])
def test_connection_without_a_complete_request_is_closed(sent: bytes, holder: BundleHolder) -> None:
    """Nothing, or headers trickled a byte per 0.2 s: closed ~0.8 s after connecting."""
    ctx = ServiceContext(settings(read_timeout_s=0.8), keys=None, holder=holder)
    with production_server(ctx) as port, _connect(port) as s:
        t0 = time.monotonic()
        s.sendall(sent)
        s.settimeout(0.2)
        closed = False
        for _ in range(25):  # 5 s at most
            try:
                if s.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
                break
            if sent:
                try:
                    s.sendall(b"s")
                except OSError:
                    closed = True
                    break
        took = time.monotonic() - t0
    assert closed, "the server kept a connection that never completed its headers"
    assert took < 3.0


def test_head_deadline_rearms_after_each_response(holder: BundleHolder) -> None:
    """A keep-alive connection whose previous request was served is still bounded."""
    ctx = ServiceContext(settings(read_timeout_s=0.8), keys=None, holder=holder)
    with production_server(ctx) as port, _connect(port) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(_read_reply(s)) == 200
        time.sleep(0.5)  # within the first deadline: the response re-armed it
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(_read_reply(s)) == 200
        s.settimeout(3.0)
        t0 = time.monotonic()
        s.sendall(b"GET /hea")
        assert _read_reply(s) == b""
        assert time.monotonic() - t0 < 2.0


def test_connections_beyond_the_limit_get_503(holder: BundleHolder) -> None:
    ctx = ServiceContext(settings(read_timeout_s=10.0, max_connections=4), keys=None, holder=holder)
    with production_server(ctx) as port, ExitStack() as held:
        idle = [held.enter_context(_connect(port)) for _ in range(3)]
        time.sleep(0.2)  # let the server register them
        with _connect(port) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _status(_read_reply(s)) == 503
        for c in idle:
            c.close()
        for _ in range(50):  # bounded: until the server has noticed the closes
            with _connect(port) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if _status(_read_reply(s)) == 200:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the server stayed at its connection limit after clients left")


# -- the middleware alone ------------------------------------------------------------------
def test_middleware_whole_body_deadline_in_process() -> None:
    sent: list[dict[str, Any]] = []
    read: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            read.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    mw = BodyLimitMiddleware(app, max_bytes=10**6, read_timeout_s=0.2, body_timeout_s=0.5)
    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(mw({"type": "http", "headers": []}, receive, send), 5))
    assert time.monotonic() - t0 < 1.5
    assert sent[0]["status"] == 408
    assert "not complete after 0.5 s" in json.loads(sent[1]["body"])["error"]["message"]
    assert 3 <= len(read) <= 11  # it read for about 0.5 s, one byte per 0.05 s


def test_middleware_stall_message_unchanged() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(5)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    mw = BodyLimitMiddleware(app, max_bytes=10, read_timeout_s=0.1, body_timeout_s=60)
    asyncio.run(mw({"type": "http", "headers": []}, receive, send))
    assert sent[0]["status"] == 408
    assert "no request data for 0.1 s" in json.loads(sent[1]["body"])["error"]["message"]


# -- settings and the uvicorn configuration ------------------------------------------------
def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    return p.parse_args(list(argv))


def test_new_settings_defaults_flags_and_env() -> None:
    d = settings_from_args(_args(), {})
    assert (d.body_timeout_s, d.max_connections, d.connection_limit) == (60.0, None, 82)
    s = settings_from_args(
        _args("--body-timeout-s", "12.5", "--max-concurrency", "4"),
        {"PILLSNAP_MAX_CONNECTIONS": "500", "PILLSNAP_MAX_QUEUE": "1"},
    )
    assert (s.body_timeout_s, s.connection_limit) == (12.5, 500)
    assert settings_from_args(_args("--max-queue", "0"), {}).connection_limit == 66


def test_uvicorn_config_bounds_connections() -> None:
    s = settings(read_timeout_s=7.0, max_concurrency=3, max_queue=5)
    config = uvicorn_config(object(), s)
    assert config.limit_concurrency == 3 + 5 + 64
    assert config.timeout_keep_alive == KEEP_ALIVE_S == 5
    assert isinstance(config.http, type) and issubclass(config.http, HeadDeadlineH11)
    assert config.http.head_timeout_s == 7.0
