"""Dataset ingest: raw YOLO / AIHub folders -> one validated, split records CSV.

Deliberately torch-free (numpy, PIL, pydantic, yaml, csv), so ingest and its tests run fast
and anywhere. Training code reads the records with :func:`read_records` and builds its
label list with :func:`class_table`.
"""

from __future__ import annotations

from .aihub import read_aihub
from .fixtures import fixture_class, make_aihub_fixture, make_yolo_fixture
from .ingest import (
    IngestOptions,
    IngestResult,
    IngestRunReport,
    SourceSpec,
    dataset_sha256,
    ingest,
    report_path_for,
)
from .records import (
    KINDS,
    RECORD_COLUMNS,
    SPLITS,
    BoxRecord,
    ClassInfo,
    GroupKey,
    ImageHeader,
    IngestReport,
    Issue,
    class_table,
    group_by_image,
    group_key,
    raw_box_to_upright,
    read_image_header,
    read_records,
    write_records,
)
from .splits import SplitSummary, assign_splits, split_leaks, split_summary
from .subsets import SubsetReport, select_subset
from .yolo import read_yolo, yolo_group

__all__ = [
    "KINDS",
    "RECORD_COLUMNS",
    "SPLITS",
    "BoxRecord",
    "ClassInfo",
    "GroupKey",
    "ImageHeader",
    "IngestOptions",
    "IngestReport",
    "IngestResult",
    "IngestRunReport",
    "Issue",
    "SourceSpec",
    "SplitSummary",
    "SubsetReport",
    "assign_splits",
    "class_table",
    "dataset_sha256",
    "fixture_class",
    "group_by_image",
    "group_key",
    "ingest",
    "make_aihub_fixture",
    "make_yolo_fixture",
    "raw_box_to_upright",
    "read_aihub",
    "read_image_header",
    "read_records",
    "read_yolo",
    "report_path_for",
    "select_subset",
    "split_leaks",
    "split_summary",
    "write_records",
    "yolo_group",
]
