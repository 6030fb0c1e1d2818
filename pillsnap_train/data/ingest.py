"""One call from raw dataset folders to a split records CSV plus a JSON report beside it.

``ingest`` is the only entry point training needs: read every source (reporting, never
raising on, bad files), optionally cut a staged subset, assign group-aware splits, write
``<out>.csv`` and ``<out>.report.json``. The report holds everything a reviewer needs to
trust the data without opening it: per-source skip reasons, subset shortfalls, split
counts and the :func:`dataset_sha256` that a bundle's provenance quotes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from tqdm import tqdm

from .aihub import read_aihub
from .records import BoxRecord, ClassInfo, IngestReport, class_table, group_key, write_records
from .splits import SplitSummary, assign_splits, split_summary
from .subsets import SubsetReport, select_subset
from .yolo import read_yolo

__all__ = [
    "IngestOptions",
    "IngestResult",
    "IngestRunReport",
    "SourceSpec",
    "dataset_sha256",
    "ingest",
    "report_path_for",
]


class SourceSpec(BaseModel):
    """One dataset folder to read. ``name`` becomes the records' ``source`` column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["yolo", "aihub"]
    path: Path
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class IngestOptions(BaseModel):
    """The knobs of one ingest, recorded in the report so the records can be re-made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    test_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    holdout_classes: tuple[str, ...] = ()
    max_classes: int | None = Field(default=None, ge=1)
    max_samples: int | None = Field(default=None, ge=1)
    single_combo_ratio: float | None = Field(default=None, gt=0.0)
    seed: int = 0
    decode_images: bool = True


class ClassEntry(BaseModel):
    index: int
    code: str
    name: str
    metadata: dict[str, str] = Field(default_factory=dict)


class IngestRunReport(BaseModel):
    """The JSON written beside the records CSV."""

    #: The records CSV's file name (reports written before the rename call it ``manifest``).
    records: str = Field(validation_alias=AliasChoices("records", "manifest"))
    sources: list[SourceSpec]
    options: IngestOptions
    readers: list[IngestReport]
    subset: SubsetReport | None = None
    splits: SplitSummary = Field(default_factory=SplitSummary)
    images: int = 0
    boxes: int = 0
    classes: list[ClassEntry] = Field(default_factory=list)
    dataset_sha256: str = ""


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest` made. ``classes`` excludes holdout-only classes; index = position."""

    report: IngestRunReport
    records_path: Path
    report_path: Path
    classes: list[ClassInfo]


def report_path_for(records_csv: str | os.PathLike[str]) -> Path:
    """``data/records.csv`` -> ``data/records.report.json``."""
    path = Path(records_csv)
    return path.with_name(f"{path.stem}.report.json")


def _file_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def dataset_sha256(records: Sequence[BoxRecord], *, progress: bool | None = None) -> str:
    """Stable sha256 of the records' content: every row plus each image's bytes hash.

    Why not hash the CSV file: paths differ between machines and the row order is an
    implementation detail, while the *data* is what provenance must pin. So each row is
    canonicalised with the image path replaced by the image's own sha256, rows are sorted,
    and the joined text is hashed. Moving or renaming the dataset keeps the hash; changing a
    pixel, a box, a label or a split changes it. Reads every image once (about 1 GB/s).
    """
    show = sys.stderr.isatty() if progress is None else progress
    image_hash: dict[str, str] = {}
    for path in tqdm(
        sorted({r.image_path for r in records}), desc="hash", unit="img", disable=not show
    ):
        image_hash[path] = _file_sha256(path)
    rows = sorted(
        json.dumps(
            [
                image_hash[r.image_path],
                r.source,
                r.group,
                r.split,
                r.kind,
                r.image_width,
                r.image_height,
                repr(float(r.x1)),
                repr(float(r.y1)),
                repr(float(r.x2)),
                repr(float(r.y2)),
                r.class_code,
                r.class_name,
                sorted(r.metadata.items()),
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for r in records
    )
    digest = hashlib.sha256(b"pillsnap-dataset-v1\n")
    for row in rows:
        digest.update(row.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _read(
    spec: SourceSpec, decode: bool, progress: bool | None
) -> tuple[list[BoxRecord], IngestReport]:
    if spec.kind == "yolo":
        return read_yolo(spec.path, name=spec.name, decode=decode, progress=progress)
    return read_aihub(spec.path, name=spec.name, decode=decode, progress=progress)


def ingest(
    sources: Iterable[SourceSpec],
    out_csv: str | os.PathLike[str],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    holdout_classes: Iterable[str] = (),
    max_classes: int | None = None,
    max_samples: int | None = None,
    single_combo_ratio: float | None = None,
    seed: int = 0,
    decode_images: bool = True,
    progress: bool | None = None,
) -> IngestResult:
    """Read ``sources``, subset, split, and write the records CSV and its report JSON.

    Order matters and is deliberate: holdout groups are set aside *before* subsetting, so
    the subset's class budget is spent on trainable classes and the holdout set does not
    shrink with the stage. Raises ``ValueError`` for duplicate source names, bad options,
    or when no usable box remains (the report is still written, to say why).
    """
    specs = list(sources)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    options = IngestOptions(
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        holdout_classes=tuple(sorted(set(holdout_classes))),
        max_classes=max_classes,
        max_samples=max_samples,
        single_combo_ratio=single_combo_ratio,
        seed=seed,
        decode_images=decode_images,
    )
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("val_fraction + test_fraction must leave something to train on")
    out = Path(out_csv)
    report_path = report_path_for(out)
    report = IngestRunReport(records=out.name, sources=specs, options=options, readers=[])

    records: list[BoxRecord] = []
    for spec in specs:
        rows, reader_report = _read(spec, decode_images, progress)
        records.extend(rows)
        report.readers.append(reader_report)

    hold = set(options.holdout_classes)
    missing = sorted(hold - {r.class_code for r in records})
    if missing:
        raise ValueError(f"holdout classes not in the data: {missing}")
    held = {group_key(r) for r in records if r.class_code in hold}
    if max_classes is not None or max_samples is not None or single_combo_ratio is not None:
        rest, report.subset = select_subset(
            [r for r in records if group_key(r) not in held],
            max_classes=max_classes,
            max_samples=max_samples,
            single_combo_ratio=single_combo_ratio,
            seed=seed,
        )
        keep = {group_key(r) for r in rest} | held
        records = [r for r in records if group_key(r) in keep]

    if not records:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
        raise ValueError(f"no usable labelled box in {names}; see {report_path}")

    records = assign_splits(
        records,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        holdout_classes=hold,
    )
    write_records(out, records)
    classes = class_table(r for r in records if r.split != "holdout")
    report.splits = split_summary(records)
    report.images = len({r.image_path for r in records})
    report.boxes = len(records)
    report.classes = [
        ClassEntry(index=i, code=c.code, name=c.name, metadata=dict(c.metadata))
        for i, c in enumerate(classes)
    ]
    report.dataset_sha256 = dataset_sha256(records, progress=progress)
    report_path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return IngestResult(report=report, records_path=out, report_path=report_path, classes=classes)
