"""Hostile input to the archive path (red team 2: f01, f02, f03, f12).

Each test feeds what broke the batch code before: unbounded stdin, a JSONL line nested
past the interpreter's stack, a folder tree 1100 levels deep, and a foreign file with no
final newline given as ``--jsonl``. Each must end in a typed error (a one-line message
and exit 1 from the CLI), quickly, with bounded reads, and leave user files as they were.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from pillsnap_sdk.batch import JsonlSink, expand_inputs
from pillsnap_sdk.batch import inputs as batch_inputs
from pillsnap_sdk.batch.jsonl import result_line
from pillsnap_sdk.cli import main
from pillsnap_sdk.errors import InvalidArgumentError, InvalidImageError

CAP = 1 << 20  # the stdin cap the tests install: small, so nothing big is ever allocated
DEPTH = 400  # folder levels: well past HEADROOM, the nested calls the f03 tests allow
HEADROOM = 150


class EndlessStdin:
    """A pipe that never ends: counts what is read and fails a read with no size bound."""

    def __init__(self) -> None:
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("stdin read with no size bound")
        self.total += size
        if self.total > 64 * CAP:
            raise AssertionError(f"read {self.total} bytes from stdin; the cap is {CAP}")
        return b"\0" * size


@pytest.fixture()
def endless(monkeypatch: pytest.MonkeyPatch) -> EndlessStdin:
    monkeypatch.setattr(batch_inputs, "STDIN_MAX_BYTES", CAP)
    stream = EndlessStdin()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=stream))
    return stream


def _one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pillsnap: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- f01: stdin is read under a cap -----------------------------------------------------------
@pytest.mark.parametrize("jsonl", [False, True], ids=["plain", "jsonl"])
def test_endless_stdin_is_refused_after_the_cap(
    endless: EndlessStdin, jsonl: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    args = ["identify", "-", "--bundle", str(tmp_path / "no-bundle")]
    t0 = time.perf_counter()
    code = main(args + (["--jsonl", str(out)] if jsonl else []))
    assert time.perf_counter() - t0 < 5
    assert code == 1
    _one_line_error(capsys.readouterr().err, "stdin", f"{CAP:,} bytes", "more was piped in")
    assert CAP < endless.total <= CAP + (1 << 20)  # stopped one chunk past the cap
    assert not out.exists()  # refused before anything was opened for writing


def test_read_stdin_returns_what_fits_and_refuses_an_oversize_file_unread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(batch_inputs, "STDIN_MAX_BYTES", CAP)
    read_stdin = batch_inputs.read_stdin
    exact = b"\x89PNG" + b"x" * (CAP - 4)
    assert read_stdin(io.BufferedReader(io.BytesIO(exact))) == exact  # exactly the cap is fine
    with pytest.raises(InvalidImageError, match="more was piped in"):
        read_stdin(io.BytesIO(exact + b"!"))
    big = tmp_path / "big.bin"  # `pillsnap identify - < big.bin`: refused from its size
    big.write_bytes(b"\0" * (CAP + 10))
    with big.open("rb") as fh:
        with pytest.raises(InvalidImageError, match=f"this input is {CAP + 10:,} bytes"):
            read_stdin(fh)
        assert fh.tell() == 0  # not one byte read
    with pytest.raises(InvalidImageError, match="not bytes"):
        read_stdin(io.StringIO("a text stream"))


def test_stdin_that_fits_still_reaches_the_photo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(png.getvalue())))
    (item,) = expand_inputs(["-"])
    assert item.name == "-" and item.source == png.getvalue()


# -- f02: a deeply nested JSONL line is an unreadable record ----------------------------------
def test_deeply_nested_jsonl_line_is_a_typed_refusal(tmp_path: Path) -> None:
    out = tmp_path / "deep.jsonl"
    content = result_line("a.jpg", "{}") + "[" * 100_000 + "\n"
    out.write_text(content)
    t0 = time.perf_counter()
    with pytest.raises(InvalidArgumentError, match=r"deep.jsonl:2 .*nested too deeply"):
        JsonlSink(out)
    assert time.perf_counter() - t0 < 2
    assert out.read_text() == content  # untouched


def test_deeply_nested_jsonl_line_in_the_cli(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deep.jsonl"
    out.write_text('{"image": ' * 50_000 + "\n")
    photo = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(photo)
    assert main(["identify", str(photo), "--jsonl", str(out), "--bundle", str(tiny_bundle)]) == 1
    _one_line_error(capsys.readouterr().err, "not a pillsnap JSONL record", "nested too deeply")


# -- f03: folder trees deeper than the recursion limit ----------------------------------------
@contextlib.contextmanager
def recursion_headroom(frames: int) -> Iterator[None]:
    """Allow only ``frames`` more nested calls than the caller's stack already uses.

    The same RecursionError the red team hit at 1100 folders with the default limit (1000),
    at a depth whose tree is cheap to build and walk: the stdlib ``**`` glob is quadratic
    in the depth and took 36 s to reach 1000 levels on the loaded test box.
    """
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


@pytest.fixture()
def deep_tree(tmp_path: Path) -> tuple[Path, Path]:
    """``root/a.jpg``, ``root/d/d/.../deep.jpg`` (DEPTH folders) and ``root/z.jpg``."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x")
    (root / "z.jpg").write_bytes(b"x")
    here = root
    for _ in range(DEPTH):
        here = here / "d"
        here.mkdir()
    deep = here / "deep.jpg"
    deep.write_bytes(b"x")
    return root, deep


def test_deep_folder_is_walked_in_order(deep_tree: tuple[Path, Path]) -> None:
    root, deep = deep_tree
    t0 = time.perf_counter()
    with recursion_headroom(HEADROOM):
        got = [item.name for item in expand_inputs([str(root)])]
    assert time.perf_counter() - t0 < 3
    assert got == [str(root / "a.jpg"), str(deep), str(root / "z.jpg")]


def test_deep_glob_matches_without_recursion(deep_tree: tuple[Path, Path]) -> None:
    """A ``**`` glob over a tree deeper than the recursion allows is matched over the
    explicit walk (it was RecursionError, after 36 s at 1,100 levels)."""
    root, deep = deep_tree
    t0 = time.perf_counter()
    with recursion_headroom(HEADROOM):
        got = [item.name for item in expand_inputs([f"{root}/**/*.jpg"])]
        deep_only = [item.name for item in expand_inputs([f"{root}/d/**/deep.jpg"])]
    assert time.perf_counter() - t0 < 3
    assert got == [str(root / "a.jpg"), str(deep), str(root / "z.jpg")]
    assert deep_only == [str(deep)]


@pytest.mark.parametrize(
    "pattern",
    ["**/*.jpg", "**", "a/**", "a/**/*.png", "**/x/*", "*/**/3.jpg", "**/.h*/*", "**/*/*.gif",
     "a/**/x/**/*.jpg", "nothing/**/*.jpg", "[ab]/**/?.jpg"],
)  # fmt: skip
def test_star_star_glob_matches_what_the_standard_library_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    """Same photos as ``glob.glob(recursive=True)`` on an ordinary tree, hidden names and
    relative patterns included (the walk only replaces the stdlib's recursion)."""
    import glob

    names = ("a/0.jpg", "a/x/3.jpg", "a/x/y/4.png", "b/1.png", "b/x/2.jpg", "c.gif",
             ".h/5.jpg", "a/.h/6.jpg", "a/x/.7.jpg", "d/e/f.gif")  # fmt: skip
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    want = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    assert [i.name for i in expand_inputs([pattern])] == want
    absolute = str(tmp_path / pattern)
    assert [i.name for i in expand_inputs([absolute])] == [str(tmp_path / p) for p in want]


def test_walk_keeps_order_and_does_not_follow_folder_symlinks(tmp_path: Path) -> None:
    for name in ("b/2.png", "b/1.png", "a/x/3.jpg", "c.gif", "a.bmp", "a/0.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "b" / "loop")  # a cycle: must not be walked
    os.symlink(tmp_path / "c.gif", tmp_path / "b" / "link.gif")  # a linked file is a photo
    got = [str(Path(i.name).relative_to(tmp_path)) for i in expand_inputs([str(tmp_path)])]
    assert got == ["a/0.jpg", "a/x/3.jpg", "a.bmp", "b/1.png", "b/2.png", "b/link.gif", "c.gif"]


# -- f12: a file that is not ours is never cut ------------------------------------------------
def test_foreign_file_without_final_newline_is_refused_untouched(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_bytes(b'{"api_key": "precious", "threshold": 0.9}')
    with pytest.raises(InvalidArgumentError, match=r"not a pillsnap results file.*left untouched"):
        JsonlSink(settings)
    assert settings.read_bytes() == b'{"api_key": "precious", "threshold": 0.9}'


def test_records_then_a_tail_that_is_no_record_start_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    content = result_line("a.jpg", "{}") + "my notes, no newline"
    out.write_text(content)
    with pytest.raises(InvalidArgumentError, match="does not begin like a pillsnap record"):
        JsonlSink(out)
    assert out.read_text() == content


@pytest.mark.parametrize("tail", ['{"im', '{"image": "b.jpg", "res', "  "])
def test_a_torn_record_after_records_is_still_cut(tmp_path: Path, tail: str) -> None:
    out = tmp_path / "run.jsonl"
    first = result_line("a.jpg", "{}")
    out.write_text(first + tail)
    with JsonlSink(out) as sink:
        assert sink.torn_bytes == len(tail) and sink.existing == 1
    assert out.read_text() == first


def test_cli_leaves_a_foreign_file_alone(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "settings.json"
    settings.write_bytes(b'{"threshold": 0.9}')
    photo = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(photo)
    args = ["identify", str(photo), "--jsonl", str(settings), "--bundle", str(tiny_bundle)]
    assert main(args) == 1
    _one_line_error(capsys.readouterr().err, "not a pillsnap results file", "left untouched")
    assert settings.read_bytes() == b'{"threshold": 0.9}'
