"""The HTTP routes (``/healthz``, ``/readyz``, ``/v1/...``, ``/metrics``).

Forms are parsed by hand rather than through FastAPI's parameter injection so that every
refusal has the one error shape and the status the contract names: 415 for a body or part
that is not an image, 422 for bad ``mode``/``top_k`` or missing fields, 400 for a photo the
SDK cannot decode.

Client text is never handed to a lenient parser: ``top_k`` is 1-3 ASCII digits (``int()``
also took ``" 7 "``, ``"1_0"`` and Arabic-Indic digits), and the reload body is at most
:data:`MAX_RELOAD_BODY` bytes of JSON whose nesting is checked before parsing
(``"[" * 100000`` made ``json.loads`` raise ``RecursionError``: a 500 and a traceback).
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import BundleError, InvalidArgumentError, InvalidImageError
from ..pipeline import Identifier, Mode
from ..results import IdentifyResult
from .errors import ServeError, error_body
from .metrics import CONTENT_TYPE_LATEST
from .state import ServiceContext

__all__ = ["MAX_RELOAD_BODY", "ROUTE_LABELS", "build_router"]

ROUTE_LABELS = {
    p: p
    for p in (
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/bundle",
        "/v1/classes",
        "/v1/identify",
        "/v1/identify/batch",
        "/v1/admin/reload",
    )
}
_MODES = ("auto", "single", "combo")
_MAX_TOP_K = 100
#: ``top_k``: plain ASCII decimal digits, no sign, space or separator ("007" is 7).
_TOP_K = re.compile(r"[0-9]{1,3}")
_OK_PART_TYPES = ("application/octet-stream", "")
#: Largest ``/v1/admin/reload`` body: ``{"bundle": PATH}`` with a plain 4096-character path fits.
MAX_RELOAD_BODY = 16 * 1024
#: Deepest ``[``/``{`` nesting a reload body may have; the valid body nests 1 deep.
_MAX_JSON_DEPTH = 8


def build_router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter()

    @r.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/readyz")
    async def readyz() -> JSONResponse:
        if ctx.ready and ctx.holder is not None:
            m = ctx.holder.current.identifier.manifest
            return JSONResponse(
                {"status": "ready", "bundle": {"name": m.name, "version": m.version}}
            )
        kind, msg = (
            ("Draining", "shutting down; send new requests elsewhere")
            if ctx.draining
            else ("Starting", "the bundle is still loading")
        )
        return JSONResponse(error_body(kind, msg), status_code=503, headers={"Retry-After": "1"})

    @r.get("/metrics")
    async def metrics(request: Request) -> Response:
        ctx.authorize(request, "client")
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @r.get("/v1/bundle")
    async def bundle(request: Request) -> dict[str, Any]:
        ctx.authorize(request, "client")
        return ctx.require_holder().current.info()

    @r.get("/v1/classes")
    async def classes(request: Request) -> dict[str, Any]:
        ctx.authorize(request, "client")
        labels = ctx.require_holder().current.identifier.labels
        return {"classes": [c.model_dump() for c in labels.classes]}

    @r.post("/v1/identify")
    async def identify(request: Request) -> Response:
        ctx.authorize(request, "client")
        served = ctx.require_holder().current
        ctx.gate.check()  # refuse before reading the body when even the queue is full
        async with _form(request, ctx.settings.max_batch) as form:
            parts = form.getlist("image")
            if len(parts) != 1:
                raise ServeError(
                    422, "InvalidArgument", "send exactly one multipart file field 'image'"
                )
            data = await _image_bytes(parts[0], "image")
            mode, top_k = _params(form)
        call = partial(served.identifier.identify, data, mode=mode, top_k=top_k)
        result, queue_s = await ctx.run(call)
        ctx.metrics.observe_result(result, queue_s)
        return Response(result.model_dump_json(), media_type="application/json")

    @r.post("/v1/identify/batch")
    async def identify_batch(request: Request) -> JSONResponse:
        ctx.authorize(request, "client")
        served = ctx.require_holder().current
        ctx.gate.check()
        limit = ctx.settings.max_batch
        async with _form(request, limit) as form:
            parts = form.getlist("images")
            if not parts or len(parts) > limit:
                raise ServeError(
                    422,
                    "InvalidArgument",
                    f"send 1 to {limit} multipart file fields 'images', got {len(parts)}",
                )
            items: list[bytes | ServeError] = []
            for i, part in enumerate(parts):
                try:
                    items.append(await _image_bytes(part, f"images[{i}]"))
                except ServeError as exc:
                    items.append(exc)
            mode, top_k = _params(form)
        entries, queue_s = await ctx.run(partial(_batch, served.identifier, items, mode, top_k))
        for entry in entries:
            if isinstance(entry, IdentifyResult):
                ctx.metrics.observe_result(entry, queue_s)
        return JSONResponse({"results": [_entry(e) for e in entries]})

    @r.post("/v1/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        ctx.authorize(request, "admin")
        holder = ctx.require_holder()
        path = _reload_path(await request.body())
        before = holder.current.info()
        try:
            fresh = await holder.reload(path)
        except BundleError as exc:
            ctx.metrics.reloads.labels(result="failed").inc()
            body: dict[str, Any] = error_body(type(exc).__name__, f"reload refused: {exc}")
            body["serving"] = {k: before[k] for k in ("name", "version", "manifest_sha256")}
            return JSONResponse(body, status_code=422)
        ctx.metrics.reloads.labels(result="ok").inc()
        ctx.publish_bundle(fresh)
        prev = {k: before[k] for k in ("name", "version", "manifest_sha256")}
        return JSONResponse({"reloaded": True, "bundle": fresh.info(), "previous": prev})

    return r


def _form(request: Request, max_files: int) -> Any:
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ServeError(
            415,
            "UnsupportedMediaType",
            f"send multipart/form-data with the photo in a file field, got {ctype or 'no type'!r}",
        )
    # max_files + 1: one more than allowed still parses, so the 422 can say how many.
    return request.form(max_files=max_files + 1, max_fields=16)


async def _image_bytes(part: UploadFile | str, name: str) -> bytes:
    if not isinstance(part, UploadFile):
        raise ServeError(422, "InvalidArgument", f"field '{name}' must be a file, not text")
    ctype = (part.content_type or "").split(";")[0].strip().lower()
    if not (ctype.startswith("image/") or ctype in _OK_PART_TYPES):
        raise ServeError(
            415, "UnsupportedMediaType", f"field '{name}' is {ctype!r}, not an image type"
        )
    return await part.read()


def _params(form: FormData) -> tuple[Mode, int]:
    """``mode`` and ``top_k``; an empty field counts as absent (an HTML form's empty input)."""
    mode = _single_field(form, "mode") or "auto"
    if not isinstance(mode, str) or mode not in _MODES:
        raise ServeError(422, "InvalidArgument", f"mode must be one of {_MODES}")
    raw = _single_field(form, "top_k") or "5"
    top_k = int(raw) if isinstance(raw, str) and _TOP_K.fullmatch(raw) else -1
    if not 1 <= top_k <= _MAX_TOP_K:
        raise ServeError(
            422,
            "InvalidArgument",
            f"top_k must be a whole number 1..{_MAX_TOP_K} in ASCII digits (e.g. 5)",
        )
    return mode, top_k  # type: ignore[return-value]


def _single_field(form: FormData, name: str) -> UploadFile | str | None:
    """The field's one value; sent twice is refused rather than silently picking one."""
    values = form.getlist(name)
    if len(values) > 1:
        raise ServeError(422, "InvalidArgument", f"send the field '{name}' at most once")
    return values[0] if values else None


def _batch(
    idf: Identifier, items: list[bytes | ServeError], mode: Mode, top_k: int
) -> list[IdentifyResult | ServeError]:
    """Identify each photo on its own, so one bad photo does not fail the others."""
    out: list[IdentifyResult | ServeError] = []
    for item in items:
        if isinstance(item, ServeError):
            out.append(item)
            continue
        try:
            out.append(idf.identify(item, mode=mode, top_k=top_k))
        except InvalidImageError as exc:
            out.append(ServeError(400, "InvalidImageError", str(exc)))
        except InvalidArgumentError as exc:
            out.append(ServeError(422, "InvalidArgumentError", str(exc)))
    return out


def _entry(e: IdentifyResult | ServeError) -> dict[str, Any]:
    if isinstance(e, IdentifyResult):
        return {"result": e.model_dump(mode="json")}
    return {**error_body(e.type, e.message), "status": e.status}


def _reload_path(body: bytes) -> Path | None:
    """The path named by a reload body (None: reload the path being served)."""
    if len(body) > MAX_RELOAD_BODY:
        raise ServeError(
            413,
            "PayloadTooLarge",
            f'reload body over {MAX_RELOAD_BODY} bytes; send {{"bundle": PATH}} or nothing',
        )
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ServeError(422, "InvalidArgument", "body must be UTF-8 JSON") from None
    if _json_depth(text) > _MAX_JSON_DEPTH:
        raise ServeError(
            422, "InvalidArgument", 'body nests too deeply; send {"bundle": PATH} or nothing'
        )
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: belt and braces after the check
        raise ServeError(422, "InvalidArgument", 'body must be JSON: {"bundle": PATH}') from None
    if not isinstance(data, dict) or set(data) - {"bundle"}:
        raise ServeError(422, "InvalidArgument", 'body must be {"bundle": PATH} or empty')
    value = data.get("bundle")
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise ServeError(422, "InvalidArgument", "'bundle' must be a non-empty path string")
    return Path(value)


def _json_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting of ``text`` outside JSON strings, found without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
