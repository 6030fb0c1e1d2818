"""Request limits: body size and timeouts (ASGI middleware), and the inference gate.

*Body size* is checked before the application reads anything: a ``Content-Length`` over the
limit gets 413 at once, without reading the body; a chunked body is counted as it arrives
and refused the moment it passes the limit. So a 2 GB upload costs us one header line,
not 2 GB of memory or disk.

*Body time* has two bounds, both answered 408: ``read_timeout_s`` between two pieces (a
stalled client) and ``body_timeout_s`` for the whole body from the first read. The second
exists because the first alone let a client that sends one byte just inside the read
timeout hold a request, and the connection, for as long as it liked.

*The gate* bounds work: at most ``max_concurrency`` photos are identified at once and at
most ``max_queue`` more wait; anything beyond gets 503 with ``Retry-After`` instead of a
growing queue whose every entry would time out anyway.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .errors import ServeError, error_body
from .settings import BODY_TIMEOUT_S

__all__ = ["BodyLimitMiddleware", "Busy", "InferenceGate"]

Scope = dict[str, Any]
Message = dict[str, Any]


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes`` (before reading them), 408 for stalled or slow
    uploads: no piece for ``read_timeout_s``, or the whole body not in ``body_timeout_s``."""

    def __init__(
        self,
        app: Any,
        *,
        max_bytes: int,
        read_timeout_s: float,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await _send_error(send, 413, "PayloadTooLarge", self._too_large_message())
            return
        received = 0
        body_done = False
        started = False
        deadline: float | None = None  # for the whole body, set at the first read

        async def limited_receive() -> Message:
            nonlocal received, body_done, deadline
            if body_done:
                return await receive()  # type: ignore[no-any-return]
            now = asyncio.get_running_loop().time()
            if deadline is None:
                deadline = now + self.body_timeout_s
            wait = min(self.read_timeout_s, deadline - now)
            try:
                if wait <= 0:
                    raise TimeoutError
                message: Message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                raise _BodyTimeout(self._timeout_message(wait < self.read_timeout_s)) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_error(send, 413, "PayloadTooLarge", self._too_large_message())
        except _BodyTimeout as exc:
            if not started:
                await _send_error(send, 408, "RequestTimeout", exc.message)

    def _timeout_message(self, whole: bool) -> str:
        if whole:
            return f"request body not complete after {self.body_timeout_s:g} s; send it faster"
        return f"no request data for {self.read_timeout_s:g} s; send the body promptly"

    def _too_large_message(self) -> str:
        mb = self.max_bytes / (1024 * 1024)
        return f"request body over the {mb:g} MB limit; send a smaller photo"


def _content_length(scope: Scope) -> int | None:
    """The declared length when it is plain ASCII digits (what RFC 9110 allows), else None.

    ``int()`` would also take ``b" 12 "``, ``b"1_0"`` or ``b"-5"``; the HTTP server already
    refuses those, and if one got through the body is still counted as it arrives.
    """
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            if not (value.isdigit() and len(value) <= 18):  # bytes.isdigit(): ASCII only
                return None
            return int(value)
    return None


async def _send_error(send: Any, status: int, type_: str, message: str) -> None:
    body = json.dumps(error_body(type_, message)).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Busy(ServeError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            503,
            "Busy",
            "the service is at capacity; retry after the Retry-After seconds",
            {"Retry-After": str(retry_after_s)},
        )


class InferenceGate:
    """At most ``concurrency`` holders at once, ``queue`` waiters; more raise :class:`Busy`.

    Lives on one event loop; counters are plain ints because only that loop touches them.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self._sem = asyncio.Semaphore(concurrency)
        self._admitted = 0
        self._running = 0
        self._avg_s = 0.1  # moving average of a hold, for Retry-After

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def running(self) -> int:
        return self._running

    def check(self) -> None:
        """Raise :class:`Busy` now if a new request could not even queue (cheap pre-check)."""
        if self._admitted >= self.concurrency + self.queue:
            raise Busy(self._retry_after())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.check()
        self._admitted += 1
        try:
            async with self._sem:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                self._running += 1
                try:
                    yield
                finally:
                    self._running -= 1
                    self._avg_s = 0.8 * self._avg_s + 0.2 * (loop.time() - t0)
        finally:
            self._admitted -= 1

    def _retry_after(self) -> int:
        waves = self._admitted / max(self.concurrency, 1)
        return max(1, math.ceil(waves * self._avg_s))
