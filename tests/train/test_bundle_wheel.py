"""``pillsnap-train bundle wheel``: a verified bundle as an installable, reproducible wheel."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import pytest

from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_train.bundle_wheel import _wheel_version, bundle_wheel, distribution_name
from pillsnap_train.cli import main


def test_wheel_layout_metadata_and_record(tiny_bundle: Path, tmp_path: Path) -> None:
    whl = bundle_wheel(tiny_bundle, tmp_path / "dist")
    assert whl.name == "pillsnap_bundle_tiny_test-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        info = "pillsnap_bundle_tiny_test-1.0.0.dist-info"
        bundle_files = sorted(load_bundle(tiny_bundle).files)
        assert sorted(n.split("/bundle/", 1)[1] for n in names if "/bundle/" in n) == bundle_files
        eps = zf.read(f"{info}/entry_points.txt").decode()
        assert "[pillsnap.bundles]\ntiny-test = pillsnap_bundle_tiny_test:bundle_path" in eps
        meta = zf.read(f"{info}/METADATA").decode()
        assert "Name: pillsnap-bundle-tiny-test\n" in meta and "Version: 1.0.0\n" in meta
        assert "Requires-Dist: pillsnap>=" in meta
        assert "Tag: py3-none-any" in zf.read(f"{info}/WHEEL").decode()
        assert names[-1] == f"{info}/RECORD"
        rows = list(csv.reader(io.StringIO(zf.read(f"{info}/RECORD").decode())))
        recorded = {r[0] for r in rows}
        assert recorded == set(names)
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                assert digest == size == ""
                continue
            data = zf.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={want}" and int(size) == len(data)


def test_wheel_is_reproducible(tiny_bundle: Path, tmp_path: Path) -> None:
    a = bundle_wheel(tiny_bundle, tmp_path / "a").read_bytes()
    b = bundle_wheel(tiny_bundle, tmp_path / "b").read_bytes()
    assert a == b


def test_tampered_bundle_is_refused(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_bundle, bad)
    (bad / "labels.json").write_text("{}")
    assert main(["bundle", "wheel", str(bad), "-o", str(tmp_path / "dist")]) == 1
    err = capsys.readouterr().err
    assert "labels.json does not match its sha256" in err and "Traceback" not in err
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_cli_prints_the_wheel_path(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bundle", "wheel", str(tiny_bundle), "-o", str(tmp_path)]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out.is_file() and out.suffix == ".whl"


def test_names_and_versions() -> None:
    assert distribution_name("Pushin_Pill.Edge") == "pillsnap-bundle-pushin-pill-edge"
    assert _wheel_version("1.1.0") == "1.1.0"
    assert _wheel_version("2.0.0-rc.1") == "2.0.0rc1"
    assert _wheel_version("2.0.0-beta.3") == "2.0.0b3"
    with pytest.raises(ValueError):
        _wheel_version("2.0.0-nightly")
