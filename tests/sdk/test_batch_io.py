"""Archive inputs and the resumable JSONL output (no model involved)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pillsnap_sdk.batch import JsonlSink, expand_inputs
from pillsnap_sdk.batch.jsonl import error_line, result_line
from pillsnap_sdk.batch.progress import Progress
from pillsnap_sdk.errors import InvalidArgumentError


def _touch(root: Path, *names: str) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def _names(args: list[str], **kw: bytes) -> list[str]:
    return [item.name for item in expand_inputs(args, **kw)]


def test_folder_is_walked_recursively_sorted_images_only(tmp_path: Path) -> None:
    _touch(tmp_path, "b.jpg", "a.PNG", "notes.txt", "z/c.jpeg", "y/d.webp", "y/e.csv", "a0.bmp")
    got = _names([str(tmp_path)])
    rel = [str(Path(n).relative_to(tmp_path)) for n in got]
    assert rel == ["a.PNG", "a0.bmp", "b.jpg", "y/d.webp", "z/c.jpeg"]
    assert _names([str(tmp_path)]) == got  # deterministic


def test_glob_list_file_stdin_and_plain_paths(tmp_path: Path) -> None:
    _touch(tmp_path, "p2.jpg", "p1.jpg", "p3.txt")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\n\n{tmp_path / 'p2.jpg'}\n  {tmp_path / 'gone.jpg'}  \n")
    got = _names([str(tmp_path / "p*"), str(listing), "-", "missing.jpg"], stdin_bytes=b"img")
    assert got == [
        str(tmp_path / "p1.jpg"),
        str(tmp_path / "p2.jpg"),
        str(tmp_path / "p2.jpg"),
        str(tmp_path / "gone.jpg"),  # a listed path that vanished is reported, not dropped
        "-",
        "missing.jpg",
    ]
    stdin_item = next(iter(expand_inputs(["-"], stdin_bytes=b"img")))
    assert stdin_item.source == b"img"


def test_bad_list_files_are_typed_errors(tmp_path: Path) -> None:
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00photo")
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        _names([str(binary)])
    long = tmp_path / "long.txt"
    long.write_text("a" * 100_000)
    with pytest.raises(InvalidArgumentError, match="longer than"):
        _names([str(long)])


def test_jsonl_resume_skips_written_names(tmp_path: Path) -> None:
    out = tmp_path / "out" / "run.jsonl"
    with JsonlSink(out) as sink:
        assert sink.existing == 0
        assert sink.claim("a.jpg") and not sink.claim("a.jpg")  # duplicates in one run
        sink.write(result_line("a.jpg", '{"pills": []}'))
        assert sink.claim("b.jpg")
        sink.write(error_line("b.jpg", "InvalidImageError", 'bad "header"'))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0] == {"image": "a.jpg", "result": {"pills": []}}
    assert lines[1]["error"] == {"type": "InvalidImageError", "message": 'bad "header"'}
    with JsonlSink(out) as sink:
        assert sink.existing == 2
        assert not sink.claim("a.jpg") and not sink.claim("b.jpg") and sink.claim("c.jpg")


def test_jsonl_torn_last_line_is_dropped_and_not_glued_to(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    out.write_text(result_line("a.jpg", "{}") + '{"image": "b.jpg", "res')  # crash mid-line
    with JsonlSink(out) as sink:
        assert sink.torn_bytes > 0 and sink.existing == 1
        assert sink.claim("b.jpg")
        sink.write(result_line("b.jpg", "{}"))
    names = [json.loads(x)["image"] for x in out.read_text().splitlines()]
    assert names == ["a.jpg", "b.jpg"]


def test_jsonl_refuses_a_file_that_is_not_ours(tmp_path: Path) -> None:
    out = tmp_path / "notes.jsonl"
    out.write_text("hello world\n")
    with pytest.raises(InvalidArgumentError, match="not a pillsnap JSONL"):
        JsonlSink(out)
    assert out.read_text() == "hello world\n"  # untouched
    with pytest.raises(InvalidArgumentError, match="folder"):
        JsonlSink(tmp_path)


def test_jsonl_refuses_devices_and_fifos(tmp_path: Path) -> None:
    """``--jsonl /dev/full`` was scanned as a file and blamed for a 16 MiB line."""
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (Path("/dev/full"), Path("/dev/zero"), fifo):
        if target.exists():
            with pytest.raises(InvalidArgumentError, match="not a regular file"):
                JsonlSink(target)


def test_progress_draws_rate_and_eta_only_when_asked() -> None:
    buf = io.StringIO()
    quiet = Progress(10, buf)  # a StringIO is not a terminal
    quiet.update(True)
    quiet.close()
    assert buf.getvalue() == ""
    bar = Progress(10, buf, force=True)
    bar.skip()
    bar.update(False)
    bar.close()
    text = buf.getvalue()
    assert "2/10" in text and "img/s" in text and "ETA" in text and "1 failed" in text
