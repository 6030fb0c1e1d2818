"""The real `pillsnap serve` process: SIGTERM drains (in-flight request completes, exit 0)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .live import multipart


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "pillsnap"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pillsnap_sdk.cli"]


def _get(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _wait_for(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def server(tiny_bundle: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    proc = subprocess.Popen(
        [*_cli(), "serve", "--bundle", str(tiny_bundle), "--port", str(port)],
        env={**os.environ, "PILLSNAP_DRAIN_GRACE_S": "1.5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: _get(port, "/readyz") == 200, 60, "readyz 200")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_sigterm_drains_in_flight_request_and_exits_0(
    server: tuple[subprocess.Popen[bytes], int], two_pills: bytes
) -> None:
    proc, port = server
    body, ctype = multipart([("image", "a.png", "image/png", two_pills)])
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(
            f"POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:half]
        )
        time.sleep(0.2)  # let the server start reading this request
        proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: _get(port, "/readyz") == 503, 10, "readyz 503 while draining")
        assert _get(port, "/healthz") == 200  # still alive during the grace period
        _wait_for(lambda: _get(port, "/healthz") is None, 15, "the listener to close")
        s.sendall(body[half:])  # the in-flight request now completes
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b'"red pill"' in data and b'"blue pill"' in data
    assert proc.wait(timeout=30) == 0
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert "draining" in log


def test_unloadable_bundle_exits_1_with_one_line(tmp_path: Path) -> None:
    port = _free_port()
    out = subprocess.run(
        [*_cli(), "serve", "--bundle", str(tmp_path / "nope"), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "cannot serve bundle" in out.stderr
    assert "Traceback" not in out.stderr
