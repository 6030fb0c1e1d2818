"""Identify a stream of photos with N worker processes, each holding one Identifier.

Why processes, not threads: decoding, resizing and our pre/post-processing hold the GIL for
a large share of each photo's time, so threads stop scaling at one core's worth of Python.
Each worker loads (and sha256-verifies) the bundle once and gets ``cpus // N`` onnxruntime
threads, so N workers never oversubscribe the machine.

Memory stays flat whatever the archive size: at most ``IN_FLIGHT_PER_WORKER * N`` photos
are queued at once (the input generator is pulled only as results come back), workers send
back finished JSONL lines, not arrays, and results come out in input order (a bounded
reorder window: the head of the queue is awaited first), so the output of a run does not
depend on which worker was faster.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from ..errors import PillsnapError
from ..pipeline import Identifier, Mode
from .inputs import InputItem
from .jsonl import error_line, result_line

__all__ = [
    "BatchWorkerError",
    "IdentifyOptions",
    "Outcome",
    "available_cpus",
    "identify_stream",
    "try_identify",
]

#: Photos queued per worker: enough to keep every worker busy while the main process
#: writes, small enough that a queue of photos (paths or stdin bytes) stays tiny.
IN_FLIGHT_PER_WORKER = 4
#: An error message longer than this is cut: one bad photo must not bloat the output.
_MAX_MESSAGE = 2_000


class BatchWorkerError(PillsnapError):
    """A worker process died (killed, out of memory, crashed in native code).

    Everything written so far is kept; re-running the same command resumes after it.
    """


@dataclass(frozen=True, slots=True)
class IdentifyOptions:
    bundle: Path
    mode: Mode = "auto"
    top_k: int = 3
    workers: int = 1
    #: onnxruntime intra-op threads per worker; None: the machine's CPUs / workers.
    threads: int | None = None

    def threads_per_worker(self) -> int:
        if self.threads is not None:
            return self.threads
        return max(1, available_cpus() // max(1, self.workers))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One photo's fate: the JSONL line to write and whether it was identified."""

    name: str
    line: str
    ok: bool


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the host's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def try_identify(
    idf: Identifier, source: str | bytes, mode: Mode, top_k: int
) -> tuple[str, None] | tuple[None, tuple[str, str]]:
    """``(result JSON, None)`` or ``(None, (error type, message))``; never raises.

    Besides PillsnapError, anything else a single photo triggers (an OSError from a flaky
    network share, a bug) is recorded too: one photo must not stop a million-photo run.
    """
    try:
        res = idf.identify(source, mode=mode, top_k=top_k)
    except Exception as exc:
        return None, (type(exc).__name__, str(exc)[:_MAX_MESSAGE])
    return res.model_dump_json(), None


def identify_one(idf: Identifier, item: InputItem, mode: Mode, top_k: int) -> Outcome:
    """Identify one photo into its JSONL line; a failure becomes an error record."""
    result, error = try_identify(idf, item.source, mode, top_k)
    if error is not None:
        return Outcome(item.name, error_line(item.name, *error), False)
    assert result is not None
    return Outcome(item.name, result_line(item.name, result), True)


def identify_stream(items: Iterable[InputItem], opts: IdentifyOptions) -> Iterator[Outcome]:
    """Yield an :class:`Outcome` per item, in input order."""
    if opts.workers <= 1:
        idf = Identifier.from_bundle(opts.bundle, intra_op_threads=opts.threads_per_worker())
        for item in items:
            yield identify_one(idf, item, opts.mode, opts.top_k)
        return
    yield from _pooled(items, opts)


# -- worker processes ----------------------------------------------------------------------
_WORKER: Identifier | None = None


def _init_worker(bundle: str, threads: int) -> None:
    global _WORKER
    _WORKER = Identifier.from_bundle(bundle, intra_op_threads=threads)


def _work(item: InputItem, mode: Mode, top_k: int) -> Outcome:
    assert _WORKER is not None, "worker used before its initializer ran"
    return identify_one(_WORKER, item, mode, top_k)


def _pooled(items: Iterable[InputItem], opts: IdentifyOptions) -> Iterator[Outcome]:
    # spawn, not fork: onnxruntime's thread pools do not survive a fork, and a fresh
    # interpreter per worker holds only what one worker needs.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=opts.workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(str(opts.bundle), opts.threads_per_worker()),
    )
    window: deque[tuple[InputItem, Future[Outcome]]] = deque()
    limit = IN_FLIGHT_PER_WORKER * opts.workers
    item: InputItem | None = None
    try:
        for item in items:
            # submit() itself raises BrokenProcessPool once a worker has died
            window.append((item, pool.submit(_work, item, opts.mode, opts.top_k)))
            if len(window) >= limit:
                item = window[0][0]
                yield window.popleft()[1].result()
        while window:
            item = window[0][0]
            yield window.popleft()[1].result()
    except BrokenProcessPool as exc:
        where = f" around {item.name}" if item is not None else ""
        raise BatchWorkerError(
            f"a worker process died while identifying photos{where} (killed, out of "
            "memory, or the bundle failed to load in it); the output so far is kept: "
            "re-run the same command to resume"
        ) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
