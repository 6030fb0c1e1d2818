"""The archive run's output: an append-only JSONL file that is also its resume checkpoint.

One line per photo, ``{"image": NAME, "result": {...}}`` or ``{"image": NAME, "error":
{"type": ..., "message": ...}}``. Each line is written whole and flushed at once, so a run
killed at any moment loses at most the line being written. Opening an existing file reads
the names already done (a re-run skips them) and cuts off a torn last line (no newline:
the crash hit mid-write) so that the next record starts on a line of its own. Cutting is
the only write that is not an append, so it is done only when the file is visibly ours:
at least one whole record before the tail, and a tail that begins the way every record
begins. Any other file (a one-line settings.json has no final newline either) is refused
and left exactly as it was.

The done-set holds a 16-byte digest per name, not the names: about 100 bytes per photo
already done, whatever the paths' length.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import TracebackType

from ..errors import InvalidArgumentError

__all__ = ["JsonlSink", "error_line", "result_line"]

_READ_CHUNK = 1 << 20
#: No record comes near this; a longer "line" means the file is not ours (bounds memory).
_MAX_LINE = 16 << 20
#: How every line this module writes begins; a torn tail is a prefix of a record, so it
#: starts with this (or, torn within these bytes, is a prefix of it).
_RECORD_START = b'{"image": '


def result_line(name: str, result_json: str) -> str:
    """One output line for a photo that was identified (``result_json``: the model's JSON)."""
    return f'{{"image": {json.dumps(name)}, "result": {result_json}}}\n'


def error_line(name: str, error_type: str, message: str) -> str:
    """One output line for a photo that could not be identified."""
    err = json.dumps({"type": error_type, "message": message})
    return f'{{"image": {json.dumps(name)}, "error": {err}}}\n'


def _key(name: str) -> bytes:
    return hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).digest()


class JsonlSink:
    """Append records to ``path``; :meth:`done` says whether a photo is already in it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._done: set[bytes] = set()
        self.torn_bytes = 0
        if self.path.is_dir():
            raise InvalidArgumentError(f"--jsonl {self.path} is a folder; name a .jsonl file")
        if self.path.exists() and not self.path.is_file():
            # /dev/full, a FIFO, a socket: the resume scan would read forever or block, and
            # the records would not be kept anywhere a later run can find them.
            raise InvalidArgumentError(
                f"--jsonl {self.path} is not a regular file; name a .jsonl file"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a+b")
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot open {self.path} for writing: {exc.strerror or exc}"
            ) from exc
        try:
            self._load()
        except BaseException:
            self._fh.close()
            raise
        #: Records already in the file when it was opened (a previous run's work).
        self.existing = len(self._done)

    def claim(self, name: str) -> bool:
        """True the first time ``name`` is seen (in the file or this run): identify it.

        A claimed name that never gets written (the run dies first) is not in the file, so
        the next run identifies it again.
        """
        key = _key(name)
        if key in self._done:
            return False
        self._done.add(key)
        return True

    def write(self, line: str) -> None:
        """Append one record (a full line from :func:`result_line`/:func:`error_line`)."""
        self._fh.write(line.encode("utf-8", "surrogateescape"))
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _load(self) -> None:
        """Read the names already written; cut a torn last line off the end of the file."""
        self._fh.seek(0)
        offset = 0  # file offset of the start of `pending`
        pending = b""
        lineno = 0
        while chunk := self._fh.read(_READ_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                lineno += 1
                self._record(line, lineno)
                offset += len(line) + 1
            if len(pending) > _MAX_LINE:
                raise InvalidArgumentError(
                    f"{self.path}: line {lineno + 1} is over {_MAX_LINE >> 20} MiB, so this "
                    "is not a pillsnap JSONL file; refusing to append to it"
                )
        if pending:  # no final newline: the previous run died mid-line, or not our file
            self._check_torn_tail(pending)
            self.torn_bytes = len(pending)
            self._fh.truncate(offset)
        self._fh.seek(0, os.SEEK_END)

    def _check_torn_tail(self, tail: bytes) -> None:
        """Refuse, before anything is cut, a tail that need not be a record torn by a crash.

        A crash mid-write leaves a prefix of one of our lines after whole records; a file
        that is not ours but lacks a final newline (a one-line JSON config) must not lose
        its last line, here its only one, to the cut.
        """
        if not tail.strip():
            return  # trailing blanks: nothing is lost by cutting them
        if not self._done:
            why = "no complete pillsnap record comes before it"
            hint = "if an interrupted run wrote it, delete it and re-run"
        elif not (tail.startswith(_RECORD_START) or _RECORD_START.startswith(tail)):
            why = "it does not begin like a pillsnap record"
            hint = "if it is a pillsnap file, remove that last line yourself and re-run"
        else:
            return
        raise InvalidArgumentError(
            f"{self.path} is not a pillsnap results file: its last line has no newline and "
            f"{why}; it was left untouched: name a new --jsonl file ({hint})"
        )

    def _record(self, line: bytes, lineno: int) -> None:
        if not line.strip():
            return
        try:
            try:
                obj = json.loads(line)
            except RecursionError:  # '[[[[...' nested past the interpreter's stack
                raise ValueError("JSON nested too deeply") from None
            name = obj["image"]
            if not isinstance(name, str) or not ({"result", "error"} & obj.keys()):
                raise ValueError("not a record")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgumentError(
                f"{self.path}:{lineno} is not a pillsnap JSONL record ({exc}); refusing to "
                "append to it: name a new --jsonl file or the one a previous run wrote"
            ) from exc
        self._done.add(_key(name))
