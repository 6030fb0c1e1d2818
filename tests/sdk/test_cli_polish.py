"""CLI manners: help with examples and defaults, one top_k default, closed pipes, -q/-v."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tinymodels import quadrant_image

from pillsnap_sdk import Identifier
from pillsnap_sdk.cli import main


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "pills.png"
    Image.fromarray(quadrant_image({0: "red", 3: "blue"})).save(p)
    return p


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*args, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_help_has_examples_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    top = _help([], capsys)
    assert "examples:" in top and "pillsnap identify photo.jpg" in top
    ident = _help(["identify"], capsys)
    assert "examples:" in ident
    assert "(default: 5)" in ident and "(default: auto)" in ident
    assert "PILLSNAP_BUNDLE" in ident and "PILLSNAP_PROVIDERS" in ident


def test_cli_top_k_default_is_the_api_default(
    tiny_bundle: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = inspect.signature(Identifier.identify).parameters["top_k"].default
    assert api == 5
    assert main(["identify", str(photo), "--bundle", str(tiny_bundle), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    n_classes = len(Identifier.from_bundle(tiny_bundle).labels.classes)
    assert len(obj["pills"][0]["candidates"]) == min(api, n_classes)
    with pytest.raises(SystemExit) as exc:
        main(["identify", str(photo), "--top-k", "0"])
    assert exc.value.code == 2


def test_closed_pipe_gives_no_traceback(tiny_bundle: Path, photo: Path) -> None:
    """A reader that stops early (``| head``) must not get a BrokenPipeError traceback."""
    cmd = [sys.executable, "-m", "pillsnap_sdk.cli", "identify", "--bundle", str(tiny_bundle)]
    proc = subprocess.Popen(
        cmd + [str(photo)] * 40,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # nobody reads: the first write hits a closed pipe
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 141


def test_quiet_and_verbose(
    tiny_bundle: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann = tmp_path / "a.png"
    base = ["identify", str(photo), "--bundle", str(tiny_bundle), "--annotate", str(ann)]
    assert main(base) == 0
    assert "annotated picture" in capsys.readouterr().out
    assert main([*base, "-q"]) == 0
    out = capsys.readouterr().out
    assert "annotated picture" not in out and "red pill" in out
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    verbose = subprocess.run(
        [sys.executable, "-m", "pillsnap_sdk.cli", "-v", *base],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert verbose.returncode == 0
    assert "bundle tiny-test 1.0.0 from" in verbose.stderr
    quiet = subprocess.run(
        [sys.executable, "-m", "pillsnap_sdk.cli", *base, "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert quiet.returncode == 0 and "bundle tiny-test" not in quiet.stderr
