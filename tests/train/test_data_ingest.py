"""ingest(): both readers together, records + report on disk, holdout, subset, dataset hash."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pydantic
import pytest

from pillsnap_train.data import (
    IngestRunReport,
    SourceSpec,
    dataset_sha256,
    ingest,
    make_aihub_fixture,
    make_yolo_fixture,
    read_records,
    split_leaks,
)
from pillsnap_train.data.fixtures import fixture_class


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[SourceSpec]:
    base = tmp_path_factory.mktemp("ingest")
    return [
        SourceSpec(kind="aihub", path=make_aihub_fixture(base / "aihub", seed=0), name="aihub"),
        SourceSpec(kind="yolo", path=make_yolo_fixture(base / "rf", seed=0), name="rf"),
    ]


def test_ingest_two_sources(sources: list[SourceSpec], tmp_path: Path) -> None:
    result = ingest(sources, tmp_path / "out" / "records.csv", val_fraction=0.25, seed=3)
    assert result.records_path == tmp_path / "out" / "records.csv"
    assert result.report_path == tmp_path / "out" / "records.report.json"
    records = read_records(result.records_path)
    assert split_leaks(records) == []
    assert {r.source for r in records} == {"aihub", "rf"}
    assert {r.split for r in records} == {"train", "val"}
    # AIHub classes are K-codes, YOLO classes are label names; one table, sorted by code.
    codes = [c.code for c in result.classes]
    assert codes == sorted(codes) and len(codes) == 4 + 3
    assert codes[:4] == [fixture_class(i)[0] for i in range(4)]

    report = IngestRunReport.model_validate_json(result.report_path.read_text(encoding="utf-8"))
    assert report == result.report
    assert [r.skipped_counts.get("corrupt_image") for r in report.readers] == [1, 1]
    assert report.boxes == len(records)
    assert report.images == len({r.image_path for r in records})
    assert report.splits.leaked_groups == []
    assert [c.index for c in report.classes] == list(range(len(codes)))
    assert report.dataset_sha256 == dataset_sha256(records)
    assert len(report.dataset_sha256) == 64


def test_ingest_is_reproducible(sources: list[SourceSpec], tmp_path: Path) -> None:
    a = ingest(sources, tmp_path / "a.csv", seed=5)
    b = ingest(sources, tmp_path / "b.csv", seed=5)
    assert a.records_path.read_bytes() == b.records_path.read_bytes()
    assert a.report.dataset_sha256 == b.report.dataset_sha256
    c = ingest(sources, tmp_path / "c.csv", seed=6)
    assert c.report.dataset_sha256 != a.report.dataset_sha256  # other split, other data


def test_holdout_and_subset(sources: list[SourceSpec], tmp_path: Path) -> None:
    held = fixture_class(3)[0]
    result = ingest(sources[:1], tmp_path / "m.csv", holdout_classes=[held], max_classes=2, seed=0)
    records = read_records(result.records_path)
    assert {r.split for r in records if r.class_code == held} == {"holdout"}
    holdout_groups = {r.group for r in records if r.split == "holdout"}
    assert {r.group for r in records if r.class_code == held} == holdout_groups
    assert held not in {c.code for c in result.classes}
    assert len(result.classes) == 2  # the subset's class budget is spent on trainable classes
    trained = {r.class_code for r in records if r.split != "holdout"}
    assert trained == {c.code for c in result.classes}
    assert result.report.subset is not None and result.report.subset.selected_classes == 2


def test_dataset_hash_pins_content_not_location(sources: list[SourceSpec], tmp_path: Path) -> None:
    records = read_records(ingest(sources[1:], tmp_path / "m.csv").records_path)
    digest = dataset_sha256(records)
    assert dataset_sha256(list(reversed(records))) == digest  # row order is not content
    moved_root = Path(shutil.copytree(sources[1].path, tmp_path / "moved"))
    moved = [
        replace(r, image_path=str(moved_root / Path(r.image_path).relative_to(sources[1].path)))
        for r in records
    ]
    assert dataset_sha256(moved) == digest
    assert dataset_sha256([replace(records[0], split="test"), *records[1:]]) != digest
    assert dataset_sha256([replace(records[0], x1=records[0].x1 + 0.001), *records[1:]]) != digest
    target = Path(moved[0].image_path)
    target.write_bytes(target.read_bytes() + b"\0")
    assert dataset_sha256(moved) != digest


def test_bad_inputs(sources: list[SourceSpec], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        ingest([sources[0], sources[0]], tmp_path / "m.csv")
    with pytest.raises(ValueError, match="holdout"):
        ingest(sources, tmp_path / "m.csv", holdout_classes=["K-999999"])
    with pytest.raises(pydantic.ValidationError):
        SourceSpec(kind="coco", path=tmp_path, name="x")
    with pytest.raises(pydantic.ValidationError):
        SourceSpec(kind="yolo", path=tmp_path, name="bad name/")
    with pytest.raises(pydantic.ValidationError):
        ingest(sources, tmp_path / "m.csv", val_fraction=1.5)


def test_no_usable_box_writes_report_then_raises(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    (root / "images").mkdir(parents=True)
    (root / "data.yaml").write_text("names: [a]\n")
    (root / "images" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match="no usable labelled box"):
        ingest([SourceSpec(kind="yolo", path=root, name="empty")], tmp_path / "m.csv")
    report = json.loads((tmp_path / "m.report.json").read_text(encoding="utf-8"))
    assert report["readers"][0]["skipped_counts"] == {"image_without_label": 1}
    assert not (tmp_path / "m.csv").exists()


def test_data_package_does_not_import_torch() -> None:
    code = "import sys, pillsnap_train.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
