"""Runs the app under uvicorn with a graceful drain on SIGTERM / SIGINT.

Drain: the first signal makes ``/readyz`` answer 503 at once, keeps accepting for
``drain_grace_s`` (so a load balancer sees not-ready and stops sending), then closes the
listener and waits up to ``drain_timeout_s`` for in-flight requests, which finish normally;
the process then exits 0. A second signal stops at once. (uvicorn's own handler re-raises
the signal after shutdown, which would make the exit status -15 instead of 0; ours does not.)

Connections are bounded too (:func:`uvicorn_config`): at most ``settings.connection_limit``
open at once (uvicorn's ``limit_concurrency``; beyond it, 503), idle keep-alives closed
after :data:`KEEP_ALIVE_S`, and a request's line and headers must arrive within
``read_timeout_s`` of the connection opening or of the previous response
(:class:`HeadDeadlineH11`). uvicorn itself has no header timeout: a client that connected
and sent nothing, or one header byte at a time, held its connection forever, and with a
connection limit a few dozen such clients would lock everyone else out.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app
from .auth import KeyStore
from .settings import ServeSettings
from .state import ServiceContext

__all__ = ["DrainingServer", "HeadDeadlineH11", "serve", "uvicorn_config"]

log = logging.getLogger("pillsnap.serve")

#: Seconds an idle keep-alive connection stays open after a response (uvicorn's default,
#: set explicitly so an upgrade of uvicorn cannot quietly change it).
KEEP_ALIVE_S = 5


class HeadDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that has no request in progress
    ``head_timeout_s`` after it opened or after its last response.

    Bytes from the client never push the timer back (only a finished response re-arms
    it), so a request line or headers trickled a byte at a time do not keep the
    connection. Once a request is in progress the body limits
    (:class:`~.limits.BodyLimitMiddleware`) and the app take over. ``head_timeout_s`` is
    set per server by :func:`uvicorn_config`; uvicorn instantiates the class itself.
    """

    head_timeout_s: float = 30.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy and not self.transport.is_closing():
            log.debug(
                "closing a connection with no complete request after %gs", self.head_timeout_s
            )
            self.transport.close()


def uvicorn_config(app: Any, settings: ServeSettings, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration :func:`serve` runs ``app`` under (tests reuse it)."""
    protocol = type(
        "HeadDeadlineH11", (HeadDeadlineH11,), {"head_timeout_s": settings.read_timeout_s}
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol,
        limit_concurrency=settings.connection_limit,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=int(max(1, round(settings.drain_timeout_s))),
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
    )


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose exit signal starts a drain instead of an immediate stop."""

    def __init__(self, config: uvicorn.Config, ctx: ServiceContext, grace_s: float) -> None:
        super().__init__(config)
        self.ctx = ctx
        self.grace_s = grace_s
        self.failed: str | None = None
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.ctx.draining:  # second signal: stop now
            self.should_exit = True
            self.force_exit = True
            return
        self.ctx.draining = True
        log.info(
            "signal %s: draining (readyz 503 for %.1f s, then finishing requests)",
            sig,
            self.grace_s,
        )
        self._timer = threading.Timer(self.grace_s, self._stop)
        self._timer.daemon = True
        self._timer.start()

    def _stop(self) -> None:
        self.should_exit = True

    def fail(self, reason: str) -> None:
        self.failed = reason
        self.should_exit = True


def serve(settings: ServeSettings, bundle_path: Path) -> int:
    """Serve until a signal; returns the process exit code (0 after a clean drain)."""
    keys = KeyStore.from_file(settings.api_keys_file) if settings.api_keys_file else None
    if keys is None:
        log.warning("no --api-keys-file: every request is allowed (loopback only)")
    ctx = ServiceContext(settings, keys=keys)
    holder: list[DrainingServer] = []
    app = create_app(ctx, bundle_path=bundle_path, on_fatal=lambda r: holder[0].fail(r))
    server = DrainingServer(uvicorn_config(app, settings), ctx, settings.drain_grace_s)
    holder.append(server)
    server.run()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if server.failed:
        return 1
    return 0 if server.started or ctx.draining else 1
