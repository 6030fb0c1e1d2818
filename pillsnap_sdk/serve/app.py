"""Builds the FastAPI application: routes, kiosk page, error shapes, middleware, start-up.

Middleware order (outermost first): metrics (counts every status, including refusals from
inner layers), then the body-size/timeout limit, then FastAPI. The bundle is loaded in the
background at start-up so ``/healthz`` answers at once and ``/readyz`` says 503 until the
bundle is verified and warmed.

python-multipart logs a WARNING for every malformed upload ("Expected boundary character
..."), which put one line of client noise on the operator's console per bad request (on
stderr even with logging unconfigured). Starlette already answers those requests 400, so
such records are passed on at DEBUG through ``pillsnap.serve.multipart`` instead; the
library's ERROR records and the service's own logs are untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from ..errors import InvalidArgumentError, InvalidImageError, PillsnapError
from .errors import ServeError, error_body
from .limits import BodyLimitMiddleware
from .metrics import MetricsMiddleware
from .reload import BundleHolder, load_served
from .routes import ROUTE_LABELS, build_router
from .state import ServiceContext

__all__ = ["create_app"]

log = logging.getLogger("pillsnap.serve")

#: The logger python-multipart's parser writes to (its module's ``__name__``).
MULTIPART_LOGGER = "python_multipart.multipart"


class _ClientNoiseToDebug(logging.Filter):
    """Drops a library's WARNING-or-lower record and re-logs its text at DEBUG as our own."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        if self.target.isEnabledFor(logging.DEBUG):
            self.target.debug("multipart parser: %s", record.getMessage())
        return False


_MULTIPART_FILTER = _ClientNoiseToDebug(logging.getLogger("pillsnap.serve.multipart"))


def quiet_multipart_warnings() -> None:
    """Install the filter on python-multipart's logger (idempotent; see the module doc)."""
    lib = logging.getLogger(MULTIPART_LOGGER)
    if _MULTIPART_FILTER not in lib.filters:
        lib.addFilter(_MULTIPART_FILTER)


_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self' blob: data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def create_app(
    ctx: ServiceContext,
    *,
    bundle_path: Path | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """The ASGI app for ``ctx``; without ``ctx.holder`` it loads ``bundle_path`` at start-up.

    ``on_fatal`` is called with a one-line reason when that initial load fails (the runner
    then stops the server with exit code 1).
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = None
        if ctx.holder is None:
            if bundle_path is None:
                raise ValueError("create_app needs ctx.holder or bundle_path")
            task = asyncio.create_task(_initial_load(ctx, bundle_path, on_fatal))
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
            ctx.close()

    app = FastAPI(
        title="pillsnap",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    quiet_multipart_warnings()
    app.include_router(build_router(ctx))
    page = resources.files("pillsnap_sdk.serve").joinpath("static/index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def kiosk() -> HTMLResponse:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    _install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=ctx.settings.max_upload_bytes,
        read_timeout_s=ctx.settings.read_timeout_s,
        body_timeout_s=ctx.settings.body_timeout_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics, routes=ROUTE_LABELS)
    return app


async def _initial_load(
    ctx: ServiceContext, path: Path, on_fatal: Callable[[str], None] | None
) -> None:
    try:
        served = await asyncio.to_thread(load_served, path, threads=ctx.settings.threads)
    except Exception as exc:  # any reason: say it in one line and stop the service
        reason = f"cannot serve bundle {path}: {exc}"
        ctx.startup_error = reason
        log.error(reason)
        if on_fatal is not None:
            on_fatal(reason)
        return
    ctx.set_holder(BundleHolder(served, threads=ctx.settings.threads))
    m = served.identifier.manifest
    log.info("ready: bundle %s %s from %s", m.name, m.version, path)


def _json_error(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(type_, message), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def serve_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServeError)
        return _json_error(exc.status, exc.type, exc.message, exc.headers)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        names = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed"}
        return _json_error(
            exc.status_code,
            names.get(exc.status_code, "HTTPError"),
            str(exc.detail),
            dict(exc.headers or {}),
        )

    async def sdk_error(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, InvalidImageError):
            return _json_error(400, type(exc).__name__, f"{exc}; retake or resend the photo")
        if isinstance(exc, InvalidArgumentError):
            return _json_error(422, type(exc).__name__, str(exc))
        # Not the client's fault (e.g. a broken bundle's non-finite output): one log line and
        # a 500 naming the SDK error type; registered by class, so Starlette does not
        # re-raise it into a traceback the way it does for the catch-all below.
        log.error("SDK error: %s: %s", type(exc).__name__, exc)
        return _json_error(500, type(exc).__name__, str(exc))

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _json_error(500, "InternalError", "unexpected server error; see the service log")

    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(PillsnapError, sdk_error)
    app.add_exception_handler(Exception, unexpected)
