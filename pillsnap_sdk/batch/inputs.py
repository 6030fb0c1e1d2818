"""Turn what a user types (files, folders, globs, a LIST.txt, ``-``) into photos to identify.

An archive run must name the same photos in the same order every time: resuming relies on
it, and two runs can then be compared line by line. So folders are walked depth-first with
each folder's entries sorted by name, globs are sorted, and a list file keeps its order.
Expansion is lazy (a generator), so a million-photo folder tree is never held as one list;
only one folder's entries (or one glob's matches) are in memory at a time.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError

__all__ = ["IMAGE_EXTENSIONS", "STDIN", "InputItem", "expand_inputs"]

#: Files a folder walk or glob picks up (lower-cased suffix). Anything else is skipped.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jpe", ".jfif"}
)
#: The argument that means "one photo, read from standard input".
STDIN = "-"
#: A list file is read line by line; a longer line is not a path (it bounds memory).
_MAX_LIST_LINE = 16_384
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class InputItem:
    """One photo to identify: ``name`` is what the output records, ``data`` the stdin bytes."""

    name: str
    data: bytes | None = None

    @property
    def source(self) -> str | bytes:
        """What :meth:`Identifier.identify` takes: the bytes for stdin, else the path."""
        return self.data if self.data is not None else self.name


def expand_inputs(args: Sequence[str], *, stdin_bytes: bytes | None = None) -> Iterator[InputItem]:
    """Yield every photo named by ``args``, in a deterministic order.

    - a folder: every file below it with an image extension (recursive, sorted per folder);
    - a name with ``*``, ``?`` or ``[`` that is not an existing file: a glob (``**``
      recurses), sorted, image extensions only;
    - a ``.txt`` file: one path per line (blank lines and ``#`` comments skipped), kept as
      written so that a path which no longer exists is reported, not silently dropped;
    - ``-``: one photo read from standard input (``stdin_bytes`` if given);
    - anything else: a photo path, kept even if missing (identifying it reports the error).
    """
    for arg in args:
        if arg == STDIN:
            data = stdin_bytes if stdin_bytes is not None else sys.stdin.buffer.read()
            yield InputItem(STDIN, data)
            continue
        path = Path(arg)
        if path.is_dir():
            yield from (InputItem(p) for p in _walk(arg))
        elif path.is_file() and path.suffix.lower() == ".txt":
            yield from (InputItem(p) for p in _read_list(path))
        elif not path.exists() and _GLOB_CHARS & set(arg):
            yield from (InputItem(p) for p in _glob(arg))
        else:
            yield InputItem(arg)


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk(root: str) -> Iterator[str]:
    """Depth-first, entries sorted by name; symlinked folders are not followed (no loops)."""
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot list folder {root}: {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path)
        elif _is_image(entry.name) and entry.is_file():
            yield entry.path


def _glob(pattern: str) -> Iterator[str]:
    for match in sorted(glob.iglob(pattern, recursive=True)):
        if _is_image(match) and os.path.isfile(match):
            yield match


def _read_list(path: Path) -> Iterator[str]:
    try:
        with path.open("r", encoding="utf-8", errors="strict") as fh:
            for lineno, raw in enumerate(iter(lambda: fh.readline(_MAX_LIST_LINE), ""), 1):
                if len(raw) == _MAX_LIST_LINE and not raw.endswith("\n"):
                    raise InvalidArgumentError(
                        f"{path}:{lineno}: line longer than {_MAX_LIST_LINE} characters; "
                        "a list file holds one image path per line"
                    )
                line = raw.strip()
                if line and not line.startswith("#"):
                    yield line
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(
            f"{path} is not a UTF-8 text list of image paths ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read list file {path}: {exc.strerror or exc}") from exc
