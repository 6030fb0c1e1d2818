"""Runs the app under uvicorn with a graceful drain on SIGTERM / SIGINT.

Drain: the first signal makes ``/readyz`` answer 503 at once, keeps accepting for
``drain_grace_s`` (so a load balancer sees not-ready and stops sending), then closes the
listener and waits up to ``drain_timeout_s`` for in-flight requests, which finish normally;
the process then exits 0. A second signal stops at once. (uvicorn's own handler re-raises
the signal after shutdown, which would make the exit status -15 instead of 0; ours does not.)
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import uvicorn

from .app import create_app
from .auth import KeyStore
from .settings import ServeSettings
from .state import ServiceContext

__all__ = ["DrainingServer", "serve"]

log = logging.getLogger("pillsnap.serve")


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
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(max(1, round(settings.drain_timeout_s))),
        log_level="info",
        server_header=False,
        proxy_headers=False,
    )
    server = DrainingServer(config, ctx, settings.drain_grace_s)
    holder.append(server)
    server.run()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if server.failed:
        return 1
    return 0 if server.started or ctx.draining else 1
