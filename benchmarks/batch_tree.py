"""Watch a process tree: peak memory and CPU seconds per process kind (driver, raylet...).

Why sample instead of ``getrusage(RUSAGE_CHILDREN)``: that counts only descendants that
were waited for. Ray's workers are children of the raylet, which is killed at shutdown
without reaping them, so their CPU never reaches the caller's rusage. Sampling every
process of the tree (``psutil``, each pid's last-seen user + system time) loses at most
one interval of a process that exits between two samples, and also tells *where* the
CPU went: the actors, or Ray's GCS, raylet and driver.

Peak memory is the tree's summed RSS (shared pages counted once per process: an upper
bound) and its summed PSS (shared pages split between the processes that map them: what
the tree really costs), the latter sampled less often since it reads every smaps file.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil

__all__ = ["TreeStats", "TreeWatcher", "kind_of", "run_watched"]

#: How often the tree is walked; PSS is read every PSS_EVERY-th walk.
INTERVAL_S = 0.2
PSS_EVERY = 5


def kind_of(proc: psutil.Process) -> str:
    """A coarse name for a process: what a CPU or memory budget is split by."""
    try:
        name = str(proc.name())
        cmd = " ".join(proc.cmdline())[:300]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "gone"
    if name in ("raylet", "gcs_server"):
        return name
    title = cmd if cmd.startswith("ray::") else name
    if title.startswith("ray::"):
        if "IdentifyBatches" in title or "MapBatches" in title or "MapWorker" in title:
            return "ray actor (IdentifyBatches)"
        if title.startswith("ray::IDLE"):
            return "ray idle/task worker"
        return "ray other (" + title.split()[0][5:].split("(")[0][:30] + ")"
    if "dashboard" in cmd or "log_monitor" in cmd or "runtime_env" in cmd:
        return "ray agents"
    if "spawn_main" in cmd or "multiprocessing" in cmd:
        return "pool worker"
    return "main/driver"


@dataclass
class TreeStats:
    """What one watched run used."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss: int = 0
    peak_pss: int = 0
    processes: int = 0
    cpu_by_kind: dict[str, float] = field(default_factory=dict)


class TreeWatcher:
    """Samples the tree under ``root_pid`` on a background thread until :meth:`stop`."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self._cpu: dict[int, tuple[str, float]] = {}
        self._kinds: dict[int, str] = {}
        self.stats = TreeStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.perf_counter()

    def start(self) -> TreeWatcher:
        self._thread.start()
        return self

    def stop(self) -> TreeStats:
        self._stop.set()
        self._thread.join()
        self.stats.wall_s = time.perf_counter() - self._t0
        by_kind: dict[str, float] = {}
        for kind, cpu in self._cpu.values():
            by_kind[kind] = by_kind.get(kind, 0.0) + cpu
        self.stats.cpu_by_kind = {k: round(v, 2) for k, v in sorted(by_kind.items())}
        self.stats.cpu_s = sum(by_kind.values())
        self.stats.processes = len(self._cpu)
        return self.stats

    def _loop(self) -> None:
        walk = 0
        while not self._stop.is_set():
            self.sample(pss=walk % PSS_EVERY == 0)
            walk += 1
            self._stop.wait(INTERVAL_S)
        self.sample(pss=False)

    def sample(self, *, pss: bool) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = pss_total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                t = p.cpu_times()
                # Ray renames a worker when it becomes an actor or runs a task: keep the
                # most telling name seen (an actor stays an actor after it goes idle).
                kind = kind_of(p)
                if kind != "gone" and not self._kinds.get(p.pid, "").startswith("ray actor"):
                    self._kinds[p.pid] = kind
                self._kinds.setdefault(p.pid, kind)
                self._cpu[p.pid] = (self._kinds[p.pid], t.user + t.system)
                rss += p.memory_info().rss
                if pss:
                    pss_total += p.memory_full_info().pss
        self.stats.peak_rss = max(self.stats.peak_rss, rss)
        self.stats.peak_pss = max(self.stats.peak_pss, pss_total)


def run_watched(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[TreeStats, str]:
    """Run ``cmd`` to completion under a :class:`TreeWatcher`; raise on a non-zero exit."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    watcher = TreeWatcher(proc.pid).start()
    out, _ = proc.communicate()
    stats = watcher.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {out.strip()[-800:]}")
    return stats, out
