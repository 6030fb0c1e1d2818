"""Work dirs and reports written before "manifest" became "records" still resume and read."""

from __future__ import annotations

import json
from pathlib import Path

from pillsnap_train.config import DataConfig, ReleaseConfig, SourceConfig
from pillsnap_train.data import IngestRunReport, SourceSpec, ingest, make_yolo_fixture
from pillsnap_train.release.data import ReleaseData
from pillsnap_train.release.results import IngestResult


def _cfg(work: Path, source: Path) -> ReleaseConfig:
    return ReleaseConfig(
        name="t",
        version="0.0.1",
        work_dir=str(work),
        data=DataConfig(sources=[SourceConfig(kind="yolo", path=str(source))]),
    )


def test_old_work_dir_reads_its_manifest_csv_new_one_writes_records_csv(tmp_path: Path) -> None:
    src = make_yolo_fixture(tmp_path / "src", seed=1)
    old, new = tmp_path / "old", tmp_path / "new"
    res = ingest([SourceSpec(kind="yolo", path=src, name="s")], old / "data" / "manifest.csv")
    assert res.report_path.name == "manifest.report.json"

    legacy = ReleaseData(_cfg(old, src))
    assert legacy.records_csv == old / "data" / "manifest.csv"
    assert len(legacy.records()) == res.report.boxes > 0

    fresh = ReleaseData(_cfg(new, src))
    assert fresh.records_csv == new / "data" / "records.csv"  # nothing there yet: the new name


def test_old_markers_and_reports_validate_and_dump_the_new_key(tmp_path: Path) -> None:
    marker = {
        "manifest": "/w/data/manifest.csv",
        "report_file": "/w/data/manifest.report.json",
        "images": 3,
        "boxes": 4,
        "skipped": 0,
        "skipped_counts": [{}],
        "subset": None,
        "dataset_sha256": "ab",
        "detector_extra": None,
        "seconds": 0.4,
    }
    old = IngestResult.model_validate(marker)
    assert old.records == "/w/data/manifest.csv"
    assert "records" in old.model_dump(exclude_unset=True)
    assert IngestResult.model_validate({**old.model_dump(), "seconds": 1.0}).records == old.records

    src = make_yolo_fixture(tmp_path / "src", seed=2)
    res = ingest([SourceSpec(kind="yolo", path=src, name="s")], tmp_path / "records.csv")
    doc = json.loads(res.report_path.read_text(encoding="utf-8"))
    assert doc["records"] == "records.csv" and "manifest" not in doc
    doc["manifest"] = doc.pop("records")  # a report written before the rename
    assert IngestRunReport.model_validate(doc) == res.report
