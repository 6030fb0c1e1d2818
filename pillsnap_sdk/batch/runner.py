"""``pillsnap identify ... --jsonl OUT``: expand inputs, skip what OUT holds, identify, append.

Exit codes follow what an archive job needs: 0 when the run finished, even if some photos
failed (each failure is a record in OUT, with its reason); 1 when photos were tried and not
one could be read (a wrong folder, a wrong bundle) or when no photo was found at all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..bundle.loader import load_bundle
from ..errors import InvalidArgumentError
from .inputs import STDIN, InputItem, expand_inputs, read_stdin
from .jsonl import JsonlSink
from .pool import IdentifyOptions, identify_stream
from .progress import Progress

__all__ = ["BatchSummary", "run_jsonl"]


@dataclass(frozen=True, slots=True)
class BatchSummary:
    identified: int
    failed: int
    skipped: int

    @property
    def exit_code(self) -> int:
        tried = self.identified + self.failed
        return 1 if (tried == 0 and self.skipped == 0) or (tried and not self.identified) else 0


def run_jsonl(
    inputs: Sequence[str],
    out: Path,
    opts: IdentifyOptions,
    *,
    stderr: TextIO | None = None,
) -> BatchSummary:
    """Identify every photo named by ``inputs`` not yet in ``out``; append one line each."""
    err = stderr if stderr is not None else sys.stderr
    # Read once (the progress pass expands the inputs twice), under the photo-size cap.
    stdin_bytes = read_stdin() if STDIN in inputs else None
    # Verify the bundle here, once, so a bad bundle is one clear error, not N dead workers.
    load_bundle(opts.bundle)
    with JsonlSink(out) as sink:
        if sink.torn_bytes:
            print(
                f"pillsnap: {out}: dropped a torn last line ({sink.torn_bytes} bytes) left by "
                "an interrupted run; that photo is identified again",
                file=err,
            )
        total = None
        progress = Progress(None, err)
        if progress.enabled:  # a second, cheap pass over the names for the bar and ETA
            total = sum(1 for _ in expand_inputs(inputs, stdin_bytes=stdin_bytes))
            progress = Progress(total, err)

        def todo() -> Iterator[InputItem]:
            for item in expand_inputs(inputs, stdin_bytes=stdin_bytes):
                if sink.claim(item.name):
                    yield item
                else:
                    progress.skip()

        try:
            for outcome in identify_stream(todo(), opts):
                sink.write(outcome.line)
                progress.update(outcome.ok)
        finally:
            progress.close()
    summary = BatchSummary(progress.done - progress.failed, progress.failed, progress.skipped)
    if summary.identified + summary.failed + summary.skipped == 0:
        raise InvalidArgumentError(
            f"no images found in {', '.join(inputs)[:500]} (looked for "
            "files with an image extension in folders, globs and list files)"
        )
    print(
        f"pillsnap: {out}: {summary.identified} identified, {summary.failed} failed, "
        f"{summary.skipped} already done",
        file=err,
    )
    return summary
