"""The dataset records: one CSV row per labelled box, shared by every training stage.

Called "records" (a release writes ``work_dir/data/records.csv``), not "manifest": that
word belongs to the bundle's ``manifest.json``. Older work dirs hold ``manifest.csv``,
which :class:`~pillsnap_train.release.data.ReleaseData` still reads.

Why a flat CSV of boxes rather than per-format readers at training time: the detector, the
classifier, calibration and the release evaluation must all see *the same* images, boxes,
classes and splits. Readers (:mod:`.yolo`, :mod:`.aihub`) run once, validate everything and
write this table; training only reads it back. A box row carries its image's size and
group, so the table is self-contained (group-aware splits, crops, class tables) and a
reviewer can open it in a spreadsheet.

This module (and the whole ``pillsnap_train.data`` package) must not import torch, so that
ingest and its tests stay fast and run on machines without the training stack.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeAlias

from PIL import Image
from pydantic import BaseModel, Field

__all__ = [
    "KINDS",
    "RECORD_COLUMNS",
    "SPLITS",
    "BoxRecord",
    "ClassInfo",
    "GroupKey",
    "ImageHeader",
    "IngestReport",
    "Issue",
    "class_table",
    "group_by_image",
    "group_key",
    "raw_box_to_upright",
    "read_image_header",
    "read_records",
    "write_records",
]

#: Split names a records CSV may hold. ``holdout`` = boxes of classes the classifier never sees,
#: kept to test unknown-pill rejection. ``""`` (unassigned) is allowed in memory only.
SPLITS: Final = ("train", "val", "test", "holdout")
#: ``single``: the photo shows exactly one pill; ``combo``: several pills in one photo.
KINDS: Final = ("single", "combo")

#: Column order of the records CSV. Fixed so that two ingests of the same data produce
#: byte-identical files (diffable, hashable).
RECORD_COLUMNS: Final = (
    "image_path",
    "group",
    "split",
    "kind",
    "image_width",
    "image_height",
    "x1",
    "y1",
    "x2",
    "y2",
    "class_code",
    "class_name",
    "source",
    "metadata_json",
)

#: A photo group is only unique within its source: two datasets may both have "IMG_0001".
GroupKey: TypeAlias = tuple[str, str]


@dataclass(frozen=True, slots=True)
class BoxRecord:
    """One labelled pill box in one image (one records row).

    ``image_path`` is absolute in memory (readers and :func:`read_records` make it so);
    coordinates are float pixels, xyxy, in the EXIF-corrected image of size
    ``image_width`` x ``image_height``. ``group`` identifies the physical photo: augmented
    copies and re-exports of one shot share it, and splits never cut a group.
    """

    image_path: str
    group: str
    split: str
    kind: str
    image_width: int
    image_height: int
    x1: float
    y1: float
    x2: float
    y2: float
    class_code: str
    class_name: str
    source: str
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Validate at construction so a bad row fails where it is made, not three stages later
        # inside a data loader.
        if self.split not in SPLITS and self.split != "":
            raise ValueError(
                f"split must be one of {SPLITS} (or '' unassigned), got {self.split!r}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.image_width < 1 or self.image_height < 1:
            raise ValueError(
                f"image size must be positive, got {self.image_width}x{self.image_height}"
            )
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(v) for v in coords):
            raise ValueError(f"box coordinates must be finite, got {coords}")
        if not (self.x2 > self.x1 and self.y2 > self.y1):
            raise ValueError(f"box must have positive width and height (xyxy), got {coords}")
        if not self.class_code:
            raise ValueError("class_code must not be empty")
        if not self.group:
            raise ValueError("group must not be empty")

    @property
    def group_key(self) -> GroupKey:
        """``(source, group)``: the unit that splits keep together."""
        return (self.source, self.group)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


def group_key(record: BoxRecord) -> GroupKey:
    """Function form of :attr:`BoxRecord.group_key` (for ``sorted(key=...)`` and friends)."""
    return (record.source, record.group)


@dataclass(frozen=True, slots=True)
class ClassInfo:
    """One classifier class. Its index is its position in :func:`class_table`'s list."""

    code: str
    name: str
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)


# --------------------------------------------------------------------------- CSV I/O


def _fmt_float(value: float) -> str:
    # repr() round-trips exactly and is deterministic; readers already rounded to 1/1000 px.
    return repr(float(value))


def _stored_path(image_path: str, base: Path) -> str:
    """Relative (POSIX) path when the image lies under the CSV's folder, else absolute.

    Why not always ``os.path.relpath``: a ``../../shared/data/...`` path silently breaks
    when the CSV alone is copied elsewhere, while images kept beside the CSV move
    together with it, which is exactly when a relative path helps.
    """
    absolute = Path(os.path.abspath(image_path))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return str(absolute)


def write_records(
    path: str | os.PathLike[str], records: Iterable[BoxRecord], *, require_split: bool = True
) -> Path:
    """Write ``records`` to a UTF-8 CSV with :data:`RECORD_COLUMNS`, in the given order.

    ``require_split`` rejects unassigned (``""``) splits: a records CSV written before
    :func:`~pillsnap_train.data.splits.assign_splits` would otherwise train on everything.
    The file is written to a temporary name and renamed, so a crash never leaves half a
    records CSV that looks complete.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = Path(os.path.abspath(out.parent))
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(RECORD_COLUMNS)
        for rec in records:
            if require_split and not rec.split:
                raise ValueError(
                    f"record for {rec.image_path} has no split; call assign_splits() first"
                )
            writer.writerow(
                (
                    _stored_path(rec.image_path, base),
                    rec.group,
                    rec.split,
                    rec.kind,
                    str(rec.image_width),
                    str(rec.image_height),
                    _fmt_float(rec.x1),
                    _fmt_float(rec.y1),
                    _fmt_float(rec.x2),
                    _fmt_float(rec.y2),
                    rec.class_code,
                    rec.class_name,
                    rec.source,
                    json.dumps(
                        dict(rec.metadata),
                        sort_keys=True,
                        ensure_ascii=False,
                        separators=(",", ":"),
                    ),
                )
            )
    os.replace(tmp, out)
    return out


def _parse_metadata(text: str, where: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: metadata_json is not valid JSON ({exc})") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{where}: metadata_json must be a JSON object of string -> string")
    return value


def read_records(path: str | os.PathLike[str]) -> list[BoxRecord]:
    """Read a records CSV written by :func:`write_records`; image paths come back absolute.

    Raises ``ValueError`` naming the file and line for a missing column or a bad value:
    the CSV is produced by code, so any defect is a bug to surface, not to skip.
    """
    src = Path(path)
    base = Path(os.path.abspath(src.parent))
    records: list[BoxRecord] = []
    with src.open("r", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in RECORD_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{src}: not a PillSnap records CSV, missing columns {missing}")
        for line_no, row in enumerate(reader, start=2):
            where = f"{src}:{line_no}"
            try:
                image = Path(row["image_path"])
                records.append(
                    BoxRecord(
                        image_path=str(image if image.is_absolute() else base / image),
                        group=row["group"],
                        split=row["split"],
                        kind=row["kind"],
                        image_width=int(row["image_width"]),
                        image_height=int(row["image_height"]),
                        x1=float(row["x1"]),
                        y1=float(row["y1"]),
                        x2=float(row["x2"]),
                        y2=float(row["y2"]),
                        class_code=row["class_code"],
                        class_name=row["class_name"],
                        source=row["source"],
                        metadata=_parse_metadata(row["metadata_json"], where),
                    )
                )
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: {exc}") from exc
    return records


# --------------------------------------------------------------------------- views


def group_by_image(records: Iterable[BoxRecord]) -> dict[str, list[BoxRecord]]:
    """Boxes per image path, images in first-seen order (detector training wants images)."""
    out: dict[str, list[BoxRecord]] = {}
    for rec in records:
        out.setdefault(rec.image_path, []).append(rec)
    return out


def _most_common(values: Sequence[str]) -> str:
    """Most frequent value; ties broken by the smallest string so the result is stable."""
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def class_table(records: Iterable[BoxRecord]) -> list[ClassInfo]:
    """One :class:`ClassInfo` per class code, sorted by code: list index = class index.

    Sorting by code (not by first appearance) keeps indices stable across re-ingests and
    source order. Name and each metadata key take their most frequent value over the boxes
    (ties: smallest), since one label file with a typo must not rename a class.
    """
    names: dict[str, list[str]] = {}
    meta: dict[str, dict[str, list[str]]] = {}
    for rec in records:
        names.setdefault(rec.class_code, []).append(rec.class_name)
        per_key = meta.setdefault(rec.class_code, {})
        for key, value in rec.metadata.items():
            per_key.setdefault(key, []).append(value)
    return [
        ClassInfo(
            code=code,
            name=_most_common(names[code]),
            metadata={k: _most_common(v) for k, v in sorted(meta[code].items())},
        )
        for code in sorted(names)
    ]


# --------------------------------------------------------------------------- images


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """Size of an image *as displayed* (after EXIF orientation) plus the raw facts."""

    width: int
    height: int
    raw_width: int
    raw_height: int
    orientation: int


_ORIENTATION_TAG: Final = 0x0112


def read_image_header(path: str | os.PathLike[str], *, decode: bool = True) -> ImageHeader:
    """Read an image's size from its header, honouring EXIF orientation (90 deg => swap).

    Why the swap: phones store portrait photos as landscape pixels plus an orientation tag,
    and both the SDK (``load_image``) and Ultralytics decode them upright, so box
    coordinates live in the upright frame. ``decode=True`` also decodes the pixels (JPEG at
    1/8 scale via ``draft``, cheap) because a truncated file has a valid header and would
    otherwise only fail later inside a training data loader. Raises ``ValueError`` for any
    unreadable image; PIL raises a zoo of exception types, hence the broad catch.
    """
    try:
        with Image.open(path) as im:
            raw_w, raw_h = im.size
            orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
            if decode:
                if im.format == "JPEG":
                    im.draft(im.mode, (max(1, raw_w // 8), max(1, raw_h // 8)))
                im.load()
    except Exception as exc:  # PIL raises many unrelated types
        raise ValueError(f"cannot read image: {type(exc).__name__}: {exc}") from exc
    if raw_w < 1 or raw_h < 1:
        raise ValueError(f"image has no pixels ({raw_w}x{raw_h})")
    if orientation not in range(1, 9):
        orientation = 1
    w, h = (raw_h, raw_w) if orientation in (5, 6, 7, 8) else (raw_w, raw_h)
    return ImageHeader(w, h, raw_w, raw_h, orientation)


def raw_box_to_upright(
    box: tuple[float, float, float, float], orientation: int, raw_width: int, raw_height: int
) -> tuple[float, float, float, float]:
    """Map an xyxy box drawn on the raw (stored) pixels into the EXIF-upright frame.

    Same geometry as ``PIL.ImageOps.exif_transpose`` (tested against it), for labels that
    were made on the stored pixels of a photo that carries an orientation tag.
    """
    x1, y1, x2, y2 = box
    w, h = raw_width, raw_height
    maps: dict[int, Callable[[float, float], tuple[float, float]]] = {
        1: lambda x, y: (x, y),
        2: lambda x, y: (w - x, y),
        3: lambda x, y: (w - x, h - y),
        4: lambda x, y: (x, h - y),
        5: lambda x, y: (y, x),
        6: lambda x, y: (h - y, x),
        7: lambda x, y: (h - y, w - x),
        8: lambda x, y: (y, w - x),
    }
    fn = maps.get(orientation, maps[1])
    ax, ay = fn(x1, y1)
    bx, by = fn(x2, y2)
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


# --------------------------------------------------------------------------- reports


class Issue(BaseModel):
    """A file (or ``file:line``) that was skipped or warned about, and why."""

    path: str
    reason: str = Field(description="stable machine-readable code, e.g. corrupt_image")
    detail: str = ""


class IngestReport(BaseModel):
    """What a reader found in one source: counts, and every skipped item with its reason.

    Readers never crash on a bad file; they record it here, so a 500K-image ingest finishes
    and a human reviews ``skipped`` afterwards instead of fixing one file per run.
    """

    source: str
    kind: Literal["yolo", "aihub"]
    root: str
    images_found: int = 0
    images_used: int = 0
    boxes: int = 0
    classes: int = 0
    skipped_counts: dict[str, int] = Field(default_factory=dict)
    warning_counts: dict[str, int] = Field(default_factory=dict)
    skipped: list[Issue] = Field(default_factory=list)
    warnings: list[Issue] = Field(default_factory=list)

    def skip(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        """Record that ``path`` (an image, label file or label line) was left out."""
        self.skipped.append(Issue(path=str(path), reason=reason, detail=detail))
        self.skipped_counts[reason] = self.skipped_counts.get(reason, 0) + 1

    def warn(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        """Record something odd that was kept (e.g. a box clipped to the image)."""
        self.warnings.append(Issue(path=str(path), reason=reason, detail=detail))
        self.warning_counts[reason] = self.warning_counts.get(reason, 0) + 1

    def finish(self, records: Sequence[BoxRecord]) -> None:
        """Fill the totals from the records the reader kept."""
        self.images_used = len({r.image_path for r in records})
        self.boxes = len(records)
        self.classes = len({r.class_code for r in records})
