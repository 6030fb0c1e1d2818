"""Start a one-machine Ray for tests, benchmarks and examples: loopback only, bounded.

Why not a bare ``ray.init()``: on a Linux box Ray advertises the machine's network address
and its gRPC servers (GCS, raylet, workers) listen on every interface, which a test or a
benchmark has no reason to do. Ray's own start-up also has fixed waits (30 s for the raylet
to register) that a loaded 2-core CI box can overrun, and then fails with a bare
``Exception``. :func:`start_local_ray` makes every Ray process listen on 127.0.0.1 only,
turns off the dashboard, usage stats and log forwarding, retries a failed start a bounded
number of times, checks that the node really is on loopback, and raises a typed
:class:`LocalRayError` (a :class:`PillsnapError`) that says what to do when it cannot start.

``ray`` is imported inside the functions only: importing this module never pulls it in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ..errors import MissingDependencyError, PillsnapError

__all__ = ["LOOPBACK", "LocalRayError", "local_ray", "quiet_data_context", "start_local_ray"]

#: The only address a local Ray started here listens on.
LOOPBACK = "127.0.0.1"
#: Environment a loopback-only, offline Ray needs, set before ``import ray`` (Ray reads
#: some of it at import time) and inherited by every process Ray starts.
#: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is Ray's "no cluster" switch (the default on macOS
#: and Windows): the node's address becomes 127.0.0.1 and the servers bind to it only.
_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
}
#: Object store for a local run: photos in flight are small (tens of kB each), and Ray's
#: default (30 % of RAM) is memory taken from the neighbours for nothing.
DEFAULT_OBJECT_STORE_MB = 512


class LocalRayError(PillsnapError):
    """A local Ray could not be started (after the retries) or is not on loopback."""


def _import_ray() -> ModuleType:
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            'Ray is not installed: pip install "pillsnap[ray]" (ray[data]>=2.58,<3)'
        ) from exc
    # Ray computed its "cluster" switch at import time; an earlier `import ray` (before
    # the environment above) would still advertise the network address, so set it here.
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    module: ModuleType = ray
    return module


def quiet_data_context(*, no_progress_timeout_s: float | None = None) -> Any:
    """Ray Data's current DataContext without progress bars or per-run stats logging.

    Progress bars redraw from the driver several times a second and the stats summary is
    computed and logged after every run: both cost driver CPU that, on a 2-core machine,
    is taken from the actors. ``no_progress_timeout_s`` makes a pipeline that stops
    moving (read tasks waiting forever for a CPU the actors hold, a hung actor) raise
    Ray's ExecutionTimeoutError instead of hanging: tests set it. Returns the context.
    """
    ray = _import_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.enable_auto_log_stats = False
    ctx.verbose_stats_logs = False
    ctx.print_on_execution_start = False
    if no_progress_timeout_s is not None:
        ctx.execution_no_progress_timeout_s = no_progress_timeout_s
    return ctx


def start_local_ray(
    num_cpus: float,
    *,
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
    attempts: int = 3,
    start_timeout_s: float = 60.0,
    retry_delay_s: float = 2.0,
    **init_kwargs: Any,
) -> ModuleType:
    """Start a local Ray with ``num_cpus`` logical CPUs on 127.0.0.1; return the module.

    ``start_timeout_s`` bounds Ray's wait for the GCS port (its other start-up wait, for
    the raylet, is fixed at 30 s inside Ray); a start that fails is shut down and tried
    again up to ``attempts`` times in all, ``retry_delay_s`` apart, then
    :class:`LocalRayError`. If Ray is already initialised in this process, it is reused
    only when it is on loopback. Call ``ray.shutdown()`` (or use :func:`local_ray`) after.
    """
    if num_cpus <= 0:
        raise LocalRayError(f"num_cpus must be > 0, got {num_cpus!r}")
    if attempts < 1:
        raise LocalRayError(f"attempts must be >= 1, got {attempts!r}")
    ray = _import_ray()
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(max(1, round(start_timeout_s))))
    if ray.is_initialized():
        _check_loopback(ray)
        return ray
    kwargs: dict[str, Any] = {
        # "local": start a new node even when RAY_ADDRESS names a cluster
        "address": "local",
        "num_cpus": num_cpus,
        "object_store_memory": object_store_mb << 20,
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "_node_ip_address": LOOPBACK,
        **init_kwargs,
    }
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        t0 = time.monotonic()
        try:
            ray.init(**kwargs)
        except Exception as exc:  # Ray raises a bare Exception on its start-up timeout
            last = exc
            with contextlib.suppress(Exception):
                ray.shutdown()
            if attempt < attempts:
                time.sleep(retry_delay_s)
            continue
        try:
            _check_loopback(ray)
        except LocalRayError:
            ray.shutdown()
            raise
        logging.getLogger(__name__).debug(
            "local Ray up in %.1f s (attempt %d)", time.monotonic() - t0, attempt
        )
        return ray
    raise LocalRayError(
        f"could not start a local Ray ({num_cpus} CPUs) in {attempts} attempts: "
        f"{type(last).__name__}: {last}. A loaded machine can overrun Ray's fixed 30 s "
        "raylet start-up wait: retry when it is quieter, or stop stale Ray processes "
        "(`ray stop`)"
    ) from last


def _check_loopback(ray: ModuleType) -> None:
    ip = ray.util.get_node_ip_address()
    if ip != LOOPBACK:
        raise LocalRayError(
            f"the Ray node in this process is on {ip}, not {LOOPBACK}: it was started "
            "elsewhere (ray.init() before start_local_ray, or RAY_ADDRESS set); "
            "shut it down first"
        )


@contextlib.contextmanager
def local_ray(num_cpus: float, **kwargs: Any) -> Iterator[ModuleType]:
    """:func:`start_local_ray` as a context manager that always shuts Ray down."""
    ray = start_local_ray(num_cpus, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()
