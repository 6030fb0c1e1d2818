"""Service settings: command-line flags, their ``PILLSNAP_*`` environment twins, checks.

Kept free of FastAPI/uvicorn so that bad settings are refused in one line before anything
heavy is imported or any bundle is loaded. The one safety rule lives here: without an API
keys file the service binds loopback only, because it would otherwise be open to anyone
on the network.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServeSettings", "SettingsError", "add_serve_arguments", "settings_from_args"]

_LOOPBACK_NAMES = {"localhost"}


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
    drain_grace_s: float = 1.0
    drain_timeout_s: float = 30.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


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
        "longest wait for the next piece of a request body (then 408)",
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
        p.add_argument(flag, dest=name, default=None, help=f"{text}; env {env} (default {default})")


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
        try:
            values[name] = typ(raw)
        except ValueError:
            raise SettingsError(f"{source}: expected {typ.__name__}, got {raw!r}") from None
    s = ServeSettings(**values)  # type: ignore[arg-type]
    _check(s)
    return s


def _check(s: ServeSettings) -> None:
    positive: Sequence[tuple[str, float]] = (
        ("--max-upload-mb", s.max_upload_mb),
        ("--max-concurrency", s.max_concurrency),
        ("--max-batch", s.max_batch),
        ("--read-timeout-s", s.read_timeout_s),
        ("--drain-timeout-s", s.drain_timeout_s),
    )
    for flag, value in positive:
        if not value > 0:
            raise SettingsError(f"{flag} must be > 0, got {value}")
    if s.max_upload_mb > 1024:
        raise SettingsError(f"--max-upload-mb must be <= 1024, got {s.max_upload_mb}")
    if s.max_queue < 0 or s.drain_grace_s < 0:
        raise SettingsError("--max-queue and --drain-grace-s must be >= 0")
    if s.threads is not None and s.threads < 1:
        raise SettingsError(f"--threads must be >= 1, got {s.threads}")
    if not 0 <= s.port <= 65535:
        raise SettingsError(f"--port must be 0..65535, got {s.port}")
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
