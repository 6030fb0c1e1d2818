"""The service's own refusals, each with its HTTP status and a JSON-able ``type``.

Every error response has the body ``{"error": {"type": ..., "message": ...}}``; SDK errors
(:class:`~pillsnap_sdk.errors.PillsnapError`) are mapped onto the same shape in
``app.py``. Messages say what to do, and never contain an API key.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ServeError", "error_body"]


class ServeError(Exception):
    """A request the service refuses: ``status`` is the HTTP code, ``type`` a stable name."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = dict(headers or {})


def error_body(type_: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"type": type_, "message": message}}
