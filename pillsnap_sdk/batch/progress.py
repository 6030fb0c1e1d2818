"""A one-line progress bar with rate and ETA, drawn only when stderr is a terminal.

tqdm is not a runtime dependency, and this needs twenty lines. Off a terminal (a log file,
CI, a pipe) nothing is drawn: carriage-return redraws turn logs into noise.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

_REDRAW_S = 0.2
_BAR = 24


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Count photos done; redraw at most every 0.2 s. ``total=None`` shows no bar or ETA."""

    def __init__(self, total: int | None, stream: TextIO | None = None, *, force: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self.total = total
        self.done = self.failed = self.skipped = 0
        self._start = time.monotonic()
        self._last = 0.0

    def skip(self) -> None:
        self.skipped += 1
        self._draw()

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        self._draw()

    def close(self) -> None:
        if self.enabled:
            self._draw(final=True)
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        count = self.done + self.skipped
        parts = []
        if self.total:
            frac = min(count / self.total, 1.0)
            fill = round(frac * _BAR)
            parts.append(f"[{'#' * fill}{'.' * (_BAR - fill)}] {count}/{self.total}")
        else:
            parts.append(f"{count}")
        parts.append(f"{rate:.1f} img/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_hms(max(self.total - count, 0) / rate)}")
        parts.append(f"elapsed {_hms(elapsed)}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        return "  ".join(parts)

    def _draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < _REDRAW_S:
            return
        self._last = now
        self.stream.write("\r" + self.line() + "\033[K")
        self.stream.flush()
