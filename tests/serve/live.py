"""A real uvicorn server on 127.0.0.1 (random port) in a thread, and a tiny HTTP client.

Tests talk to the service over loopback HTTP, as users do: status lines, headers and bodies
are the real ones. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from pillsnap_sdk.pipeline import Identifier
from pillsnap_sdk.serve.app import create_app
from pillsnap_sdk.serve.auth import KeyStore, generate_key, parse_keys
from pillsnap_sdk.serve.reload import BundleHolder, ServedBundle
from pillsnap_sdk.serve.settings import ServeSettings
from pillsnap_sdk.serve.state import ServiceContext

Part = tuple[str, str | None, str | None, bytes]  # name, filename, content type, data


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Keys:
    client: str
    admin: str
    store: KeyStore
    text: str


def make_keys() -> Keys:
    client, cline = generate_key("kiosk-1")
    admin, aline = generate_key("ops", admin=True)
    text = f"# test keys\n{cline}\n{aline}\n"
    return Keys(client, admin, KeyStore(parse_keys(text)), text)


def multipart(parts: Sequence[Part]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, filename, ctype, data in parts:
        out += f"--{boundary}\r\n".encode()
        disp = f'form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out += f"Content-Disposition: {disp}\r\n".encode()
        if ctype is not None:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class Live:
    def __init__(self, port: int, ctx: ServiceContext) -> None:
        self.port = port
        self.ctx = ctx

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            # The server may answer (e.g. 413) and close before the whole body is sent.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request(method, path, body=body or None, headers=headers or {})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def post_parts(self, path: str, parts: Sequence[Part], key: str | None = None) -> Reply:
        body, ctype = multipart(parts)
        headers = {"Content-Type": ctype}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return self.request("POST", path, body, headers)

    def identify(self, data: bytes, key: str | None = None, **fields: str) -> Reply:
        parts: list[Part] = [("image", "photo.png", "image/png", data)]
        parts += [(k, None, None, v.encode()) for k, v in fields.items()]
        return self.post_parts("/v1/identify", parts, key)


def served(path: Path, idf: Identifier | None = None) -> BundleHolder:
    return BundleHolder(ServedBundle(idf or Identifier.from_bundle(path), path))


@contextmanager
def live_server(ctx: ServiceContext, **app_kwargs: Any) -> Iterator[Live]:
    """Serve ``create_app(ctx)`` on 127.0.0.1:<free port> until the block ends."""
    app = create_app(ctx, **app_kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield Live(port, ctx)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def settings(**kw: Any) -> ServeSettings:
    return ServeSettings(**kw)
