"""Turn what a user types (files, folders, globs, a LIST.txt, ``-``) into photos to identify.

An archive run must name the same photos in the same order every time: resuming relies on
it, and two runs can then be compared line by line. So folders are walked depth-first with
each folder's entries sorted by name, globs are sorted, and a list file keeps its order.
Expansion is lazy (a generator), so a million-photo folder tree is never held as one list;
only one folder's entries (or one glob's matches) are in memory at a time.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, InvalidImageError
from ..image import DEFAULT_MAX_PIXELS, max_file_bytes

__all__ = [
    "IMAGE_EXTENSIONS",
    "STDIN",
    "STDIN_MAX_BYTES",
    "InputItem",
    "expand_inputs",
    "read_stdin",
]

#: Files a folder walk or glob picks up (lower-cased suffix). Anything else is skipped.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jpe", ".jfif"}
)
#: The argument that means "one photo, read from standard input".
STDIN = "-"
#: A list file is read line by line; a longer line is not a path (it bounds memory).
_MAX_LIST_LINE = 16_384
_GLOB_CHARS = frozenset("*?[")
#: Most bytes ``-`` reads from standard input: the largest photo file the default pixel
#: limit allows. Stdin is held in memory whole, so without a cap ``head -c 2G /dev/zero |
#: pillsnap identify -`` would exhaust memory before any check could refuse it.
STDIN_MAX_BYTES = max_file_bytes(DEFAULT_MAX_PIXELS)
_STDIN_CHUNK = 1 << 20


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
            data = stdin_bytes if stdin_bytes is not None else read_stdin()
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


def read_stdin(stream: Any = None) -> bytes:
    """The photo piped to ``-``, read in bounded steps and refused past :data:`STDIN_MAX_BYTES`.

    ``stream`` defaults to the binary standard input. A redirected regular file that is
    already too big is refused from its size, without reading it; a pipe is read in 1 MiB
    steps until EOF or until one byte more than the cap has arrived, so memory stays bounded
    by the cap whatever is piped in. Raises :class:`InvalidImageError`, as a too-big photo
    file does. (A small loop of its own rather than ``image._read_capped``: its message
    would report the bytes read so far as the input's size.)
    """
    if stream is None:
        text = sys.stdin
        if text is None:  # pythonw, or a service started with stdin closed
            raise InvalidArgumentError("'-' reads a photo from standard input, but there is none")
        stream = getattr(text, "buffer", text)
    cap = STDIN_MAX_BYTES
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.BytesIO in tests, a closed stream
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > cap:
        raise _stdin_too_big(st.st_size, cap)
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = stream.read(min(_STDIN_CHUNK, cap + 1 - total))
            if not isinstance(chunk, bytes):  # a text stream, or None: non-blocking, no data
                raise InvalidImageError(
                    f"stdin: read() returned {type(chunk).__name__}, not bytes; pipe the "
                    "photo file itself (pillsnap identify - < photo.jpg)"
                )
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise _stdin_too_big(None, cap)
    except OSError as exc:
        raise InvalidImageError(f"stdin: cannot read: {exc.strerror or exc}") from exc


def _stdin_too_big(size: int | None, cap: int) -> InvalidImageError:
    got = f"this input is {size:,} bytes" if size is not None else "more was piped in"
    return InvalidImageError(
        f"stdin: a piped photo may be at most {cap:,} bytes (the largest file under the "
        f"default {DEFAULT_MAX_PIXELS:,}-pixel limit) and {got}; downscale or recompress it"
    )


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk(root: str) -> Iterator[str]:
    """Depth-first, entries sorted by name; symlinked folders are not followed (no loops).

    An explicit stack of per-folder iterators, not recursion: a folder tree 1000 levels
    deep (a 2 KB path, legal on every file system) would otherwise raise RecursionError.
    The stack holds one sorted folder listing per level, as the recursive version did.
    """
    stack = [iter(_listing(root))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry.is_dir(follow_symlinks=False):
            stack.append(iter(_listing(entry.path)))
        elif _is_image(entry.name) and entry.is_file():
            yield entry.path


def _listing(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        shown = folder if len(folder) <= 300 else f"...{folder[-300:]}"
        raise InvalidArgumentError(f"cannot list folder {shown}: {exc.strerror or exc}") from exc


def _glob(pattern: str) -> Iterator[str]:
    """The photos ``pattern`` matches, sorted. A ``**`` pattern is matched over an explicit
    walk (:func:`_walk_glob`): the standard library's ``**`` recurses once per folder level
    and passes each match up through every level (a 1,100-level tree took 36 s, then
    RecursionError)."""
    # Without ``**`` the stdlib recurses once per pattern component: bounded by the pattern.
    found = _walk_glob(pattern) if "**" in pattern else glob.iglob(pattern)
    matches = sorted(found)
    for match in matches:
        if _is_image(match) and os.path.isfile(match):
            yield match


def _walk_glob(pattern: str) -> Iterator[str]:
    """Paths under the pattern's literal leading folders that match its remaining parts,
    with ``**`` as any number of folders (glob's ``recursive=True``; hidden names only
    match parts that start with "."; symlinked folders are not followed, as in folder
    walks)."""
    parts = pattern.split(os.sep)
    first = next(i for i, part in enumerate(parts) if _MAGIC.search(part))
    base = os.sep.join(parts[:first]) or (os.sep if pattern.startswith(os.sep) else "")
    rest = parts[first:]
    root = base or os.curdir
    if not os.path.isdir(root):
        return
    for path in _walk(root):
        rel = os.path.relpath(path, root).split(os.sep)
        if _parts_match(rel, rest):
            yield os.path.join(base, *rel) if base else os.path.join(*rel)


_MAGIC = re.compile(r"[*?[]")


def _parts_match(names: Sequence[str], pats: Sequence[str]) -> bool:
    """Whether path components ``names`` match pattern components ``pats`` (``**`` = zero
    or more components). A set of pattern positions per name: no recursion, no
    backtracking, so a deep path costs its depth times the pattern's length."""

    def closure(states: set[int]) -> set[int]:
        out = set(states)
        for j in sorted(states):
            while j < len(pats) and pats[j] == "**":
                j += 1
                out.add(j)
        return out

    states = closure({0})
    for name in names:
        nxt = set()
        for j in states:
            if j >= len(pats):
                continue
            pat = pats[j]
            if name.startswith(".") and not pat.startswith("."):
                continue
            if pat == "**":
                nxt.add(j)
            elif fnmatch.fnmatchcase(name, pat):
                nxt.add(j + 1)
        if not nxt:
            return False
        states = closure(nxt)
    return len(pats) in states


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
