"""``pillsnap-train bundle add-variants``: a gated INT8 classifier added to a published
bundle as a new minor version, its fp32 files byte-identical; no training involved (a
hand-built conv classifier stands in for the trained one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pillsnap_sdk import Identifier
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.bundle.writer import write_bundle
from pillsnap_train.cli import main
from pillsnap_train.config import ReleaseConfig, load_config
from pillsnap_train.export.add_variants import add_variants
from pillsnap_train.package import labels_file
from pillsnap_train.release import GateFailure, Release, run_release
from pillsnap_train.release.crops import classifier_spec

from .conftest import write_config
from .test_int8 import small_convnet


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> ReleaseConfig:
    import pillsnap_train.data.fixtures as fx

    root = tmp_path_factory.mktemp("addvar")
    yolo = fx.make_yolo_fixture(root / "yolo", n_classes=3, photos_per_class=4, seed=3)
    raw: dict[str, Any] = {
        "name": "tiny-var",
        "version": "0.0.1",
        "work_dir": "work",
        "output_dir": "out",
        "data": {"sources": [{"kind": "yolo", "path": str(yolo)}], "val_fraction": 0.3},
        "classifier": {"img_size": 32},
        "detector": {"enabled": False},
        "export": {"variants": ["int8"], "int8": {"calibration_crops": 16, "batch": 8}},
        # the stand-in classifier has random weights: the accuracy rule is not under test
        "gates": {"max_variant_top1_drop": 1.0},
    }
    cfg = load_config(write_config(root / "release.yaml", raw))
    run_release(cfg, until="ingest")
    return cfg


def _bundle(
    cfg: ReleaseConfig, out: Path, dataset_sha256: str | None = None, precision: str = "fp32"
) -> Path:
    rel = Release(cfg, read_only=True)
    n = len(rel.classes())
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = small_convnet(out.parent / "fp32.onnx", classes=n, size=32, wide=16)
    sha = dataset_sha256 or rel.done_info("ingest")["dataset_sha256"]
    write_bundle(
        out,
        name=cfg.name,
        version="1.0.0",
        classifier={
            "file": "classifier.onnx",
            "precision": precision,
            "input_name": "input",
            "input_shape": ["N", 3, 32, 32],
            "preprocessing": classifier_spec(cfg).model_dump(),
            "output_format": "logits",
        },
        models={"classifier.onnx": onnx_path.read_bytes()},
        labels=labels_file(rel.classes()),
        model_card="# tiny-var 1.0.0\n\n## Precision variants\n\nnone\n\n## Gates\n\nrows\n",
        extra={"provenance": {"dataset_sha256": sha, "training_config": {"version": "1.0.0"}}},
    )
    return out


def test_adds_a_gated_variant_as_a_minor_version(ingested: ReleaseConfig, tmp_path: Path) -> None:
    src = _bundle(ingested, tmp_path / "src" / "tiny-var")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    res = add_variants(ingested, src, tmp_path / "out")
    assert [r["precision"] for r in res.reports] == ["int8"]
    assert res.reports[0]["released"], res.reports[0]["reason"]
    assert res.version == "1.1.0" and res.bundle == tmp_path / "out" / "tiny-var"
    b = load_bundle(res.bundle)
    m = b.manifest
    assert m.version == "1.1.0" and [v.precision for v in m.variants] == ["int8"]
    assert b.files["classifier.onnx"] == before["classifier.onnx"]
    assert b.files["labels.json"] == before["labels.json"]
    assert m.thresholds == load_bundle(src).manifest.thresholds
    assert m.provenance.training_config["export"]["int8"]["calibration_crops"] == 16
    assert m.variants[0].metrics["top1_drop"] == res.reports[0]["top1_drop"]
    card = b.files["MODEL_CARD.md"].decode()
    assert card.startswith("# tiny-var 1.1.0") and "| int8 |" in card and "## Gates" in card
    idf = Identifier.from_bundle(res.bundle, precision="int8")
    assert idf.manifest.classifier.file == "classifier_int8.onnx"
    assert res.zip is not None and res.zip.is_file()


def test_refuses_a_bundle_of_another_split(ingested: ReleaseConfig, tmp_path: Path) -> None:
    src = _bundle(ingested, tmp_path / "src" / "tiny-var", dataset_sha256="0" * 64)
    with pytest.raises(GateFailure, match="dataset sha256"):
        add_variants(ingested, src, tmp_path / "out")
    ok = _bundle(ingested, tmp_path / "ok" / "tiny-var")
    with pytest.raises(GateFailure, match="not newer"):
        add_variants(ingested, ok, tmp_path / "out", version="1.0.0")
    assert not (tmp_path / "out").exists()


def test_refuses_a_bundle_that_serves_int8(ingested: ReleaseConfig, tmp_path: Path) -> None:
    """Variants are quantized from fp32: an int8-served bundle (``default_precision``) is
    refused, not quantized twice."""
    src = _bundle(ingested, tmp_path / "src" / "tiny-var", precision="int8")
    with pytest.raises(GateFailure, match="serves an int8 classifier"):
        add_variants(ingested, src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_exit_codes(
    ingested: ReleaseConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _bundle(ingested, tmp_path / "src" / "tiny-var")
    cfg_file = tmp_path / "cfg.yaml"
    data = json.loads(ingested.model_dump_json())
    data["gates"]["max_variant_top1_drop"] = -1.0  # nothing can pass
    cfg_file.write_text(json.dumps(data))
    args = [
        "bundle",
        "add-variants",
        str(src),
        "--config",
        str(cfg_file),
        "-o",
        str(tmp_path / "o"),
    ]
    assert main(args) == 1
    assert "no variant passed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["bundle", "add-variants", str(src), "--config", str(tmp_path / "nope.yaml")]) == 2
