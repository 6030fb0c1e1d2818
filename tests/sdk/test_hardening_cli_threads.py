"""Hardening II: the CLI never shows a traceback or raw terminal escapes, and one shared
Identifier bounds its concurrent work whatever the number of caller threads.

Why: ``--annotate`` into a missing folder printed a traceback; a bundle could put
``ESC [`` sequences on an operator's screen through a label name; and 8 caller threads
took RSS from 303 to 1,009 MB for good because each concurrent onnxruntime run grows
the session arena by its own working set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tinymodels import quadrant_image

from pillsnap_sdk import Identifier
from pillsnap_sdk.bundle import loader
from pillsnap_sdk.bundle.manifest import canonical_manifest_digest
from pillsnap_sdk.cli import main, safe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "pills.png"
    Image.fromarray(quadrant_image({0: "red", 3: "blue"})).save(p)
    return p


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pillsnap_sdk.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )


def test_annotate_errors_are_messages_not_tracebacks(
    tiny_bundle: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four bad --annotate targets: exit 2 and a message (an exception escaping main()
    would fail this test), checked before any photo is processed."""
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"x")
    locked = tmp_path / "locked"
    locked.write_bytes(b"a file where a folder is needed")
    cases = [
        ([str(photo)], tmp_path / "missing" / "out.png", "does not exist"),
        ([str(photo)], tmp_path / "out.xyz", "unknown picture extension"),
        ([str(photo), str(photo)], existing, "is a file"),
        ([str(photo), str(photo)], locked / "sub", "cannot create folder"),
    ]
    for images, out, fragment in cases:
        capsys.readouterr()
        code = main(["identify", *images, "--bundle", str(tiny_bundle), "--annotate", str(out)])
        captured = capsys.readouterr()
        assert code == 2, (out, captured)
        assert fragment in captured.err and captured.out == "", captured


def test_annotate_write_failure_is_exit_1(
    tiny_bundle: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that exists but cannot be written (simulated: tests may run as root)."""
    import pillsnap_sdk.annotate as annotate

    def denied(*args: Any, **kwargs: Any) -> Path:
        raise OSError("Permission denied")

    out = tmp_path / "out.png"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(annotate, "save_annotated", denied)
        code = main(["identify", str(photo), "--bundle", str(tiny_bundle), "--annotate", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write" in err and "Permission denied" in err


def test_annotate_ok_paths(tiny_bundle: Path, photo: Path, tmp_path: Path) -> None:
    assert main(["identify", str(photo), "--bundle", str(tiny_bundle), "--annotate",
                 str(tmp_path / "a.jpg")]) == 0  # fmt: skip
    folder = tmp_path / "many"
    args = ["identify", str(photo), str(photo), "--bundle", str(tiny_bundle)]
    assert main([*args, "--annotate", str(folder)]) == 0
    assert (folder / "pills.annotated.png").is_file()


def test_directory_and_fifo_are_named_as_such(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    # A folder is a batch of photos (issue 15); a FIFO in it or given alone is refused
    # without being read.
    assert main(["identify", str(fifo), "--bundle", str(tiny_bundle)]) == 1
    assert main(["identify", str(tmp_path), "--bundle", str(tiny_bundle)]) == 1
    assert time.monotonic() - t0 < 60  # a read of the FIFO would block forever
    err = capsys.readouterr().err
    assert "not a regular file" in err
    assert "no such image file" not in err
    from pillsnap_sdk import Identifier, InvalidImageError

    with pytest.raises(InvalidImageError, match="is a directory"):
        Identifier.from_bundle(tiny_bundle).identify(tmp_path)


def _hostile_labels_bundle(src: Path, dst: Path) -> Path:
    bundle = Path(shutil.copytree(src, dst))
    labels = json.loads((bundle / "labels.json").read_text("utf-8"))
    labels["classes"][0]["name"] = "red\x1b[2J\x1b]0;pwned\x07\u202epill"
    labels["classes"][0]["code"] = "K-\x1b[31m1"
    (bundle / "labels.json").write_text(json.dumps(labels))
    raw = json.loads((bundle / "manifest.json").read_text("utf-8"))
    raw["files"]["labels.json"] = loader.sha256_hex((bundle / "labels.json").read_bytes())
    raw["manifest_sha256"] = canonical_manifest_digest(raw)
    (bundle / "manifest.json").write_text(json.dumps(raw))
    return bundle


def test_label_names_are_sanitised_on_the_terminal(
    tiny_bundle: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _hostile_labels_bundle(tiny_bundle, tmp_path / "hostile")
    assert main(["identify", str(photo), "--bundle", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "red\\x1b[2J" in out and "\\u202e" in out  # visible, escaped
    assert main(["identify", str(photo), "--bundle", str(bundle), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out.splitlines()[0])  # JSON keeps the exact name
    assert any("\x1b[2J" in p["candidates"][0]["name"] for p in obj["pills"])


def test_safe_keeps_ordinary_text() -> None:
    assert safe("Ibuprofen 200 mg – ×2 日本") == "Ibuprofen 200 mg – ×2 日本"
    assert safe("a\tb\x00c\x9bd") == "a\\tb\\x00c\\x9bd"


# -- class 7: concurrent work per Identifier is bounded ------------------------------------------
def test_concurrent_runs_are_bounded(tiny_bundle: Path) -> None:
    """8 caller threads, max_concurrent_runs=2: never more than 2 calls inside at once,
    and the results are those of sequential calls."""
    idf = Identifier.from_bundle(tiny_bundle, max_concurrent_runs=2)
    photo = quadrant_image({0: "red", 3: "blue"}, size=256)
    want = idf.identify(photo).model_dump(exclude={"timings_ms"})
    inside = 0
    peak = 0
    lock = threading.Lock()
    real = idf._classify

    def counting(crops: Any) -> Any:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.01)
        try:
            return real(crops)
        finally:
            with lock:
                inside -= 1

    idf._classify = counting  # type: ignore[method-assign]
    barrier = threading.Barrier(8)
    bad: list[Any] = []

    def work() -> None:
        barrier.wait()
        for _ in range(5):
            got = idf.identify(photo).model_dump(exclude={"timings_ms"})
            if got != want:
                bad.append(got)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert bad == [] and peak == 2, peak


@pytest.mark.slow
def test_thread_memory_bounded_on_default_bundle() -> None:
    """Default bundle, 22-pill photo, 8 threads: peak RSS measured in a child process.
    Measured (2026-12-01, 2-core box): 1 thread 332 MB, 8 threads 577 MB with the default
    max_concurrent_runs=2, 943 MB unbounded. Bound: within 1.5x of the 1-thread peak + 150."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tm", REPO / "scripts/thread_memory.py")
    assert spec and spec.loader
    tm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tm)
    bundle = REPO / "models" / "pushin-pill-edge"
    photo = REPO / "examples" / "table_22_pills.jpg"
    one = tm.measure(bundle, photo, 1, 2, 2)
    eight = tm.measure(bundle, photo, 8, 2, 2)
    assert eight["pills"] == one["pills"] >= 20
    assert eight["peak_mb"] < 1.5 * one["peak_mb"] + 150, (one, eight)


def test_identify_still_works_after_thread_pool(tiny_bundle: Path) -> None:
    """Guard: the bounded slots are released on errors too (no deadlock after refusals)."""
    idf = Identifier.from_bundle(tiny_bundle, max_concurrent_runs=1)
    for _ in range(5):
        with pytest.raises(ValueError):
            idf.identify(b"not an image")
    assert idf.identify(np.full((32, 32, 3), 200, np.uint8)).image_size == (32, 32)
