"""``pillsnap serve``: the edge HTTP service and kiosk page (needs the ``serve`` extra).

This package is imported only when ``pillsnap serve`` runs (or a caller imports it), so a
runtime-only install never pulls in FastAPI or uvicorn. ``settings`` and ``auth`` use the
standard library only; ``keygen`` therefore works without the extra.
"""

from __future__ import annotations

__all__: list[str] = []
