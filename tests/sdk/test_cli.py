"""CLI exit codes and output formats."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_identify_table(tiny_bundle: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identify", str(photo), "--bundle", str(tiny_bundle)]) == 0
    out = capsys.readouterr().out
    assert "mode=combo" in out and "red pill" in out and "blue pill" in out


def test_identify_json_one_object_per_image(
    tiny_bundle: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "identify",
                str(photo),
                str(photo),
                "--bundle",
                str(tiny_bundle),
                "--json",
                "--top-k",
                "2",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    obj = json.loads(lines[0])
    assert obj["mode_used"] == "combo" and len(obj["pills"][0]["candidates"]) == 2
    assert {p["label"]["name"] for p in obj["pills"]} == {"red pill", "blue pill"}


def test_identify_bad_image_exit_1(
    tiny_bundle: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert main(["identify", str(photo), str(bad), "--bundle", str(tiny_bundle)]) == 1
    captured = capsys.readouterr()
    assert "red pill" in captured.out and "bad.jpg" in captured.err


def test_identify_annotate(tiny_bundle: Path, photo: Path, tmp_path: Path) -> None:
    """The picture is the photo with each pill's box drawn on it: the box outlines changed,
    the photo far from any box (and label) did not."""
    out = tmp_path / "ann.png"
    assert main(["identify", str(photo), "--bundle", str(tiny_bundle), "--annotate", str(out)]) == 0
    with Image.open(out) as img:
        assert img.size == (128, 128)
        drawn = np.asarray(img.convert("RGB")).astype(np.int16)
    original = np.asarray(Image.open(photo).convert("RGB")).astype(np.int16)
    changed = (drawn != original).any(axis=2)
    boxes = [p.bbox for p in Identifier.from_bundle(tiny_bundle).identify(photo).pills]
    assert len(boxes) == 2 and all(b is not None for b in boxes)

    near = np.zeros_like(changed)  # each box, grown enough to hold its label
    for b in boxes:
        assert b is not None
        x1, y1, x2, y2 = (round(v) for v in b.as_tuple())
        outline = np.concatenate(
            [changed[y1, x1 : x2 + 1], changed[y2, x1 : x2 + 1],
             changed[y1 : y2 + 1, x1], changed[y1 : y2 + 1, x2]]
        )  # fmt: skip
        assert outline.mean() > 0.95, f"box {b} is not drawn ({outline.mean():.0%} of its edge)"
        near[max(0, y1 - 24) : y2 + 25, max(0, x1 - 4) : x2 + 60] = True
    assert changed[near].sum() > 0 and not changed[~near].any(), (
        f"{int(changed[~near].sum())} pixels changed away from every box"
    )
    assert (~near).sum() > 1000  # a real part of the photo is away from the boxes


def test_bundle_info_and_verify(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bundle", "info", str(tiny_bundle)]) == 0
    assert "tiny-test 1.0.0" in capsys.readouterr().out
    assert main(["bundle", "verify", str(tiny_bundle)]) == 0
    assert capsys.readouterr().out.startswith("OK")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "labels.json").write_text("{}")
    assert main(["bundle", "verify", str(broken)]) == 1
    assert "labels.json does not match its sha256" in capsys.readouterr().out


def test_missing_bundle_exit_1(photo: Path, tmp_path: Path) -> None:
    assert main(["identify", str(photo), "--bundle", str(tmp_path / "nope")]) == 1


def test_usage_errors_exit_2(photo: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["identify"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["identify", str(photo), "--mode", "sideways"])
    assert exc.value.code == 2


def test_version_subprocess() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pillsnap_sdk.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("pillsnap 0.")


def test_threads_must_be_positive(photo: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["identify", str(photo), "--threads", "0"])
    assert exc.value.code == 2
