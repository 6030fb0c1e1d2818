"""Service settings: command-line flags, their ``PILLSNAP_*`` environment twins, checks.

Kept free of FastAPI/uvicorn so that bad settings are refused in one line before anything
heavy is imported or any bundle is loaded. The one safety rule lives here: without an API
keys file the service binds loopback only, because it would otherwise be open to anyone
on the network.

Numbers are parsed strictly, not with ``int()``/``float()``: those accept ``"inf"``,
``"nan"``, ``"1e999"``, ``"1_0"``, padding and non-ASCII digits, and an infinite drain
timeout then crashed the service with a traceback when uvicorn rounded it. Only ASCII
decimal numbers are accepted, and every number has a finite range (:data:`RANGES`).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServeSettings", "SettingsError", "add_serve_arguments", "settings_from_args"]

_LOOPBACK_NAMES = {"localhost"}
_INT = re.compile(r"[+-]?[0-9]{1,12}")
_FLOAT = re.compile(
    r"[+-]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})"  # 12, 12.5, 12., .5
    r"(?:[eE][+-]?[0-9]{1,3})?"  # exponent: 1e999 parses to inf, which the range refuses
)
_HOUR = 3600.0
#: Default for ``--body-timeout-s``: a 20 MB upload needs about 3 Mbit/s to make it, a
#: phone photo of a few MB far less; a client trickling bytes is cut off after this long.
BODY_TIMEOUT_S = 60.0
#: Connections allowed beyond the inference slots and the queue (``--max-connections``
#: default): room for uploads still arriving, idle keep-alives, probes and metrics scrapes.
CONNECTION_HEADROOM = 64

#: ``name -> (low, high, low_excluded)``: every number must lie in this range (``high``
#: included). The high ends are generous; they refuse nonsense (a 10**9-thread pool, a
#: drain longer than any orchestrator waits before killing), they are not tuning advice.
RANGES: dict[str, tuple[float, float, bool]] = {
    "port": (0, 65535, False),
    "max_upload_mb": (0, 1024, True),
    "max_concurrency": (0, 256, True),
    "max_queue": (0, 100_000, False),
    "max_batch": (0, 1024, True),
    "threads": (0, 256, True),
    "read_timeout_s": (0, _HOUR, True),
    "body_timeout_s": (0, _HOUR, True),
    "max_connections": (1, 100_000, True),  # uvicorn answers 503 once open >= the limit
    "drain_grace_s": (0, _HOUR, False),
    "drain_timeout_s": (0, _HOUR, True),
}


class SettingsError(ValueError):
    """A flag or environment variable has a value the service refuses to start with."""


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Everything the service needs to start; built by :func:`settings_from_args`."""

    bundle: Path | None = None  # None: the SDK's default bundle
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys_file: Path | None = None
    max_upload_mb: float = 20.0
    max_concurrency: int = 2
    max_queue: int = 16
    max_batch: int = 16
    threads: int | None = None
    read_timeout_s: float = 30.0
    body_timeout_s: float = BODY_TIMEOUT_S
    max_connections: int | None = None  # None: max_concurrency + max_queue + headroom
    drain_grace_s: float = 1.0
    drain_timeout_s: float = 30.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def connection_limit(self) -> int:
        """Open connections the server holds at once (uvicorn ``limit_concurrency``).

        Without a bound every trickling client costs a file descriptor until the process
        runs out; with one, the excess get an immediate 503 and the rest keep working.
        """
        if self.max_connections is not None:
            return self.max_connections
        return self.max_concurrency + self.max_queue + CONNECTION_HEADROOM


# flag -> (env var, type, default, help)
_FLAGS: dict[str, tuple[str, type, object, str]] = {
    "bundle": ("PILLSNAP_BUNDLE", Path, None, "bundle dir or .zip (unset: models/DEFAULT)"),
    "host": ("PILLSNAP_HOST", str, "127.0.0.1", "address to bind"),
    "port": ("PILLSNAP_PORT", int, 8080, "TCP port"),
    "api_keys_file": (
        "PILLSNAP_API_KEYS_FILE",
        Path,
        None,
        "keys file: one 'ID SHA256HEX [ROLE]' per line (required to bind beyond loopback)",
    ),
    "max_upload_mb": ("PILLSNAP_MAX_UPLOAD_MB", float, 20.0, "largest request body (MB)"),
    "max_concurrency": (
        "PILLSNAP_MAX_CONCURRENCY",
        int,
        2,
        "photos identified at once",
    ),
    "max_queue": ("PILLSNAP_MAX_QUEUE", int, 16, "requests waiting beyond those (then 503)"),
    "max_batch": ("PILLSNAP_MAX_BATCH", int, 16, "most images in one batch request"),
    "threads": ("PILLSNAP_THREADS", int, None, "onnxruntime intra-op threads per model"),
    "read_timeout_s": (
        "PILLSNAP_READ_TIMEOUT_S",
        float,
        30.0,
        "longest wait for the next piece of a request body (then 408), and for a request's "
        "headers (then the connection is closed)",
    ),
    "body_timeout_s": (
        "PILLSNAP_BODY_TIMEOUT_S",
        float,
        BODY_TIMEOUT_S,
        "longest time a whole request body may take to arrive (then 408)",
    ),
    "max_connections": (
        "PILLSNAP_MAX_CONNECTIONS",
        int,
        None,
        "open connections held at once, idle ones included; more get 503 "
        f"(unset: max-concurrency + max-queue + {CONNECTION_HEADROOM})",
    ),
    "drain_grace_s": (
        "PILLSNAP_DRAIN_GRACE_S",
        float,
        1.0,
        "on SIGTERM, seconds /readyz answers 503 before the listener closes",
    ),
    "drain_timeout_s": (
        "PILLSNAP_DRAIN_TIMEOUT_S",
        float,
        30.0,
        "on SIGTERM, longest wait for in-flight requests",
    ),
}


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Add every flag; a flag left out falls back to its environment variable, then default."""
    for name, (env, _typ, default, text) in _FLAGS.items():
        flag = "--" + name.replace("_", "-")
        limits = f"; {_range_text(*RANGES[name])}" if name in RANGES else ""
        p.add_argument(
            flag, dest=name, default=None, help=f"{text}; env {env} (default {default}{limits})"
        )


def _range_text(lo: float, hi: float, lo_open: bool) -> str:
    return f"{'>' if lo_open else '>='} {lo:g} and <= {hi:g}"


def settings_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> ServeSettings:
    """Flags beat environment variables beat defaults; every value is range-checked."""
    environ = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, (var, typ, default, _text) in _FLAGS.items():
        raw = getattr(args, name, None)
        source = "--" + name.replace("_", "-")
        if raw is None and environ.get(var):
            raw, source = environ[var], var
        if raw is None:
            values[name] = default
            continue
        values[name] = _parse(typ, str(raw), source)
    s = ServeSettings(**values)  # type: ignore[arg-type]
    _check(s)
    return s


def _parse(typ: type, raw: str, source: str) -> object:
    """``raw`` as ``typ``; ints and floats must be plain ASCII decimal (see the module doc)."""
    if typ is int or typ is float:
        pattern, what = (_INT, "ASCII digits") if typ is int else (_FLOAT, "a decimal like 2.5")
        if pattern.fullmatch(raw) is None:
            shown = raw if len(raw) <= 40 else raw[:40] + "..."
            raise SettingsError(f"{source}: expected {typ.__name__} ({what}), got {shown!r}")
    return typ(raw)


def _check(s: ServeSettings) -> None:
    for name, (lo, hi, lo_open) in RANGES.items():
        value = getattr(s, name)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        low_ok = value > lo if lo_open else value >= lo
        if not (math.isfinite(value) and low_ok and value <= hi):  # NaN fails every test
            raise SettingsError(f"{flag} must be {_range_text(lo, hi, lo_open)}, got {value}")
    if s.api_keys_file is None and not is_loopback(s.host):
        raise SettingsError(
            f"refusing to bind {s.host} without --api-keys-file: anyone on the network could "
            "use the service; create keys with `pillsnap serve keygen ID` or bind 127.0.0.1"
        )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; False for 0.0.0.0, names and the rest."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
