"""Prometheus metrics: requests by route and status, latency by stage, pills, bundle info.

Each service instance gets its own :class:`~prometheus_client.CollectorRegistry` (not the
process-global one), so several apps in one process (tests, reload) never collide. Routes
are labelled by their template (``/v1/identify``), never the raw path, so a scanner
requesting random URLs cannot blow up the label set; unknown paths count as ``other``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ..results import IdentifyResult

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """All the service's collectors, in one private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "pillsnap_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "pillsnap_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "pillsnap_stage_seconds",
            "Latency by stage: queue (waiting for a slot), the SDK's stages, and sdk_total",
            ["stage"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.pills = Counter(
            "pillsnap_pills",
            "Pills found, by status (identified / unknown)",
            ["status"],
            registry=r,
        )
        self.bundle_info = Gauge(
            "pillsnap_bundle_info",
            "The bundle being served (value 1)",
            ["name", "version", "digest"],
            registry=r,
        )
        self.reloads = Counter(
            "pillsnap_reloads", "Bundle reloads by result (ok / failed)", ["result"], registry=r
        )
        self.in_flight = Gauge(
            "pillsnap_inference_in_flight", "Requests holding or waiting for a slot", registry=r
        )

    def set_bundle(self, name: str, version: str, digest: str) -> None:
        self.bundle_info.clear()
        self.bundle_info.labels(name=name, version=version, digest=digest).set(1)

    def observe_result(self, result: IdentifyResult, queue_s: float) -> None:
        self.stage_seconds.labels(stage="queue").observe(queue_s)
        for stage, ms in result.timings_ms.items():
            label = "sdk_total" if stage == "total" else stage
            self.stage_seconds.labels(stage=label).observe(ms / 1000.0)
        for pill in result.pills:
            self.pills.labels(status=pill.status).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every response (including 413s and 503s from inner layers) by route template."""

    def __init__(self, app: Any, *, metrics: Metrics, routes: Mapping[str, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # path -> route label

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.routes.get(scope.get("path", ""), "other")
        status = 500
        t0 = time.perf_counter()

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            self.metrics.requests.labels(route=route, status=str(status)).inc()
            self.metrics.request_seconds.labels(route=route).observe(time.perf_counter() - t0)
