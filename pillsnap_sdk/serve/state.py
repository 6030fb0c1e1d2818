"""What the routes share: settings, keys, the served bundle, the gate, metrics, lifecycle.

One :class:`ServiceContext` per app. Inference runs on a private thread pool with
``max_concurrency`` workers (the SDK's :class:`Identifier` is thread-safe), so the event
loop stays free to answer health checks, metrics and 503s while photos are identified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from starlette.requests import Request

from .auth import KeyStore, Role, presented_key
from .errors import ServeError
from .limits import InferenceGate
from .metrics import Metrics
from .reload import BundleHolder, ServedBundle
from .settings import ServeSettings

__all__ = ["ServiceContext"]

T = TypeVar("T")


class ServiceContext:
    """Shared state of one running service (one event loop)."""

    def __init__(
        self,
        settings: ServeSettings,
        *,
        keys: KeyStore | None,
        holder: BundleHolder | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.holder = holder
        self.metrics = metrics or Metrics()
        self.gate = InferenceGate(settings.max_concurrency, settings.max_queue)
        self.executor = ThreadPoolExecutor(
            max_workers=settings.max_concurrency, thread_name_prefix="pillsnap-infer"
        )
        self.draining = False
        self.startup_error: str | None = None
        if holder is not None:
            self.publish_bundle(holder.current)

    # -- lifecycle -----------------------------------------------------------------------
    def set_holder(self, holder: BundleHolder) -> None:
        self.holder = holder
        self.publish_bundle(holder.current)

    def publish_bundle(self, served: ServedBundle) -> None:
        m = served.identifier.manifest
        self.metrics.set_bundle(m.name, m.version, m.manifest_sha256)

    @property
    def ready(self) -> bool:
        return self.holder is not None and not self.draining

    def require_holder(self) -> BundleHolder:
        if self.holder is None:
            raise ServeError(
                503, "Starting", "the bundle is still loading; retry shortly", {"Retry-After": "1"}
            )
        return self.holder

    # -- auth ----------------------------------------------------------------------------
    def authorize(self, request: Request, role: Role) -> None:
        """401 without a key, 403 for a wrong key or a client key on an admin route.

        With no keys file (loopback only, enforced by the settings) everything is allowed.
        """
        if self.keys is None:
            return
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if key is None:
            raise ServeError(
                401,
                "Unauthorized",
                "send an API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                {"WWW-Authenticate": "Bearer"},
            )
        entry = self.keys.check(key)
        if entry is None:
            raise ServeError(403, "Forbidden", "this API key is not valid")
        if role == "admin" and entry.role != "admin":
            raise ServeError(403, "Forbidden", "this route needs an admin key")

    # -- inference -----------------------------------------------------------------------
    async def run(self, fn: Callable[[], T]) -> tuple[T, float]:
        """Run ``fn`` on the inference pool under the gate; returns (result, queue seconds)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self.metrics.in_flight.inc()
        try:
            async with self.gate.slot():
                queue_s = loop.time() - t0
                return await loop.run_in_executor(self.executor, fn), queue_s
        finally:
            self.metrics.in_flight.dec()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
