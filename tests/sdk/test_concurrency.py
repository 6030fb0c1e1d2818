"""One ``Identifier`` shared by 8 threads gives exactly the sequential results.

Why: servers build one Identifier (loading a bundle costs hundreds of ms and the model
memory) and call it from a thread pool. The pipeline docstring promises that this is
safe; this test holds it to that: mixed images, sizes, modes, ``top_k``, batches and
invalid inputs (which must raise ``InvalidImageError`` in *their* thread, without
disturbing the others), all compared field by field with a sequential run.
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tinymodels import quadrant_image

from pillsnap_sdk import Identifier, InvalidImageError

THREADS = 8


@dataclass(frozen=True)
class Task:
    """One call: ``identify`` (or ``identify_batch`` when ``batch``) with these arguments."""

    name: str
    images: tuple[Any, ...]
    mode: str
    top_k: int
    batch: bool = False


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _scaled(fill: dict[int, str], w: int, h: int) -> np.ndarray:
    img = Image.fromarray(quadrant_image(fill, size=128)).resize((w, h), Image.Resampling.NEAREST)
    return np.asarray(img)


FILLS: list[dict[int, str]] = [
    {},
    {0: "red"},
    {3: "blue"},
    {0: "red", 3: "green"},
    {0: "red", 1: "green", 2: "blue"},
    {0: "red", 1: "green", 2: "blue", 3: "red"},
    {1: "green", 2: "green"},
]


def build_tasks() -> list[Task]:
    """A deterministic mix of valid and invalid calls covering every router branch."""
    tasks: list[Task] = []
    sizes = [(64, 64), (128, 128), (200, 150), (97, 301), (640, 480)]
    modes = ["auto", "single", "combo"]
    for i, fill in enumerate(FILLS):
        w, h = sizes[i % len(sizes)]
        arr = _scaled(fill, w, h)
        for j, mode in enumerate(modes):
            top_k = 1 + (i + j) % 3
            tasks.append(Task(f"np{i}-{mode}", (arr,), mode, top_k))
        tasks.append(Task(f"png{i}", (_encode(arr, "PNG"),), "auto", 3))
        tasks.append(Task(f"jpg{i}", (_encode(arr, "JPEG"),), modes[i % 3], 2))
        tasks.append(Task(f"grey{i}", (arr[:, :, 0].copy(),), "auto", 1))
    tasks.append(Task("batch3", tuple(_scaled(f, 96, 96) for f in FILLS[3:6]), "auto", 3, True))
    tasks.append(Task("batch_combo", (_scaled(FILLS[5], 160, 120),) * 4, "combo", 2, True))
    bad: list[tuple[str, Any]] = [
        ("float", np.zeros((32, 32, 3), np.float32)),
        ("garbage", b"definitely not an image" * 10),
        ("truncated", _encode(_scaled(FILLS[4], 64, 64), "PNG")[:60]),
        ("hxwx2", np.zeros((16, 16, 2), np.uint8)),
        ("empty", b""),
    ]
    tasks += [Task(f"bad-{n}", (v,), "auto", 3) for n, v in bad]
    tasks.append(Task("bad-in-batch", (_scaled(FILLS[1], 64, 64), bad[0][1]), "auto", 3, True))
    return tasks


def outcome(idf: Identifier, task: Task) -> Any:
    """Comparable outcome: results without timings, or the error type and message."""
    try:
        if task.batch:
            results = idf.identify_batch(list(task.images), mode=task.mode, top_k=task.top_k)  # type: ignore[arg-type]
        else:
            results = [idf.identify(task.images[0], mode=task.mode, top_k=task.top_k)]  # type: ignore[arg-type]
    except InvalidImageError as exc:
        return ("InvalidImageError", str(exc))
    return [r.model_dump(exclude={"timings_ms"}) for r in results]


def hammer(idf: Identifier, calls_per_thread: int, timeout_s: float) -> dict[str, Any]:
    """Run THREADS x calls_per_thread mixed calls; return stats, fail on any mismatch."""
    tasks = build_tasks()
    expected = [outcome(idf, t) for t in tasks]
    assert sum(isinstance(e, tuple) for e in expected) == 6, "the invalid inputs must fail"
    assert any(isinstance(e, list) and e[0]["mode_used"] == "combo" for e in expected)
    barrier = threading.Barrier(THREADS)
    mismatches: list[str] = []
    crashes: list[BaseException] = []
    done = [0] * THREADS
    refused = [0] * THREADS

    def worker(tid: int) -> None:
        rng = np.random.default_rng(1000 + tid)
        try:
            barrier.wait(timeout=60)
            for n in range(calls_per_thread):
                i = int(rng.integers(len(tasks)))
                got = outcome(idf, tasks[i])
                if got != expected[i]:
                    mismatches.append(f"thread {tid} call {n} task {tasks[i].name}: {got!r}")
                if isinstance(got, tuple):
                    refused[tid] += 1
                done[tid] += 1
        except BaseException as exc:  # anything but InvalidImageError is a failure
            crashes.append(exc)

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(timeout_s - (time.perf_counter() - t0), 1.0))
    elapsed = time.perf_counter() - t0
    assert not any(t.is_alive() for t in threads), f"threads still running after {timeout_s}s"
    assert not crashes, f"{len(crashes)} thread(s) raised: {crashes[:3]!r}"
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"
    assert done == [calls_per_thread] * THREADS
    assert all(r > 0 for r in refused), "every thread should also have met invalid inputs"
    total = THREADS * calls_per_thread
    return {
        "threads": THREADS,
        "calls": total,
        "invalid_calls": sum(refused),
        "distinct_tasks": len(tasks),
        "seconds": round(elapsed, 2),
        "calls_per_s": round(total / elapsed, 1),
    }


@pytest.fixture(scope="module")
def shared(tiny_bundle: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle)


def test_threads_match_sequential_quick(shared: Identifier) -> None:
    """8 threads x 50 calls on one Identifier == the sequential results, no errors."""
    stats = hammer(shared, calls_per_thread=50, timeout_s=300)
    print("CONCURRENCY", json.dumps(stats))


def test_threads_without_detector(tiny_bundle_nodet: Path) -> None:
    """The classifier-only bundle (where "auto" means "single") is just as thread-safe."""
    idf = Identifier.from_bundle(tiny_bundle_nodet)
    arrays = [_scaled(f, 80, 60) for f in FILLS]
    expected = [idf.identify(a, top_k=2).model_dump(exclude={"timings_ms"}) for a in arrays]
    errors: list[str] = []

    def worker(tid: int) -> None:
        try:
            for n in range(40):
                i = (tid + n) % len(arrays)
                got = idf.identify(arrays[i], top_k=2).model_dump(exclude={"timings_ms"})
                if got != expected[i]:
                    errors.append(f"thread {tid} call {n}: {got!r}")
        except BaseException as exc:
            errors.append(f"thread {tid} raised {exc!r}")

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


@pytest.mark.slow
def test_threads_match_sequential_full(shared: Identifier) -> None:
    """The long run: 8 threads x 1,000 calls."""
    stats = hammer(shared, calls_per_thread=1000, timeout_s=1800)
    print("CONCURRENCY", json.dumps(stats))
