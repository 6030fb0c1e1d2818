"""Read an Ultralytics / Roboflow YOLO detection folder into :class:`BoxRecord` rows.

Layout: ``data.yaml`` (``names`` as a dict or a list) and one or more ``images/`` folders,
each with a sibling ``labels/`` folder (``root/images``, or Roboflow's ``train/images``,
``valid/images``, ``test/images``). A label is found the way Ultralytics finds it: the last
``images`` path component becomes ``labels`` and the extension ``.txt``. Label lines are
parsed by :func:`~pillsnap_train.data.yolo_format.parse_line` (``class cx cy w h``
normalised to the upright, EXIF-corrected image; polygon lines reduced to their box). The
source's own train/valid/test folders are *not* kept as splits: Roboflow assigns them per
file, and :func:`~pillsnap_train.data.splits.assign_splits` re-splits by photo group
instead.

Groups: Roboflow writes every augmented copy as ``<photo>_<ext>.rf.<hash>.<ext>``, so the
group (the physical photo) is the part before ``_<ext>.rf.``; other names use the stem.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml
from tqdm import tqdm

from .records import BoxRecord, IngestReport, read_image_header
from .yolo_format import parse_line

__all__ = ["IMAGE_EXTENSIONS", "read_yolo", "read_yolo_names", "yolo_group"]

#: Image file extensions a reader accepts (compared lower-case).
IMAGE_EXTENSIONS: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

_ROBOFLOW: Final = re.compile(
    r"^(?P<group>.+)_(?:jpe?g|png|bmp|webp|tiff?|heic)\.rf\.[0-9a-z]+$", re.I
)


def yolo_group(stem: str) -> str:
    """Photo group of an image file stem (``IMG_1-Medium_jpeg.rf.ab12`` -> ``IMG_1-Medium``)."""
    match = _ROBOFLOW.match(stem)
    return match.group("group") if match else stem


def read_yolo_names(root: str | os.PathLike[str]) -> dict[int, str]:
    """Class index -> name from ``root/data.yaml`` (or ``data.yml``); raises if unusable.

    A missing or malformed ``data.yaml`` is a configuration error, not a bad sample, so it
    raises instead of being reported: nothing in the folder can be labelled without it.
    """
    base = Path(root)
    for candidate in ("data.yaml", "data.yml"):
        cfg_path = base / candidate
        if cfg_path.is_file():
            break
    else:
        raise FileNotFoundError(f"{base}: no data.yaml; is this a YOLO dataset folder?")
    with cfg_path.open(encoding="utf-8") as fh:
        cfg: Any = yaml.safe_load(fh)
    names: Any = cfg.get("names") if isinstance(cfg, dict) else None
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cfg_path}: 'names' keys must be class indices ({exc})") from exc
    raise ValueError(f"{cfg_path}: 'names' must be a list or an index -> name mapping")


def _image_dirs(root: Path) -> list[Path]:
    dirs = {p for p in root.rglob("images") if p.is_dir()}
    if root.name == "images" and root.is_dir():
        dirs.add(root)
    # Drop an images/ nested inside another images/: its files are already listed.
    return sorted(d for d in dirs if not any(o != d and o in d.parents for o in dirs))


def _walk_files(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def read_yolo(
    root: str | os.PathLike[str],
    *,
    name: str | None = None,
    decode: bool = True,
    progress: bool | None = None,
) -> tuple[list[BoxRecord], IngestReport]:
    """Read every labelled box of a YOLO folder; bad items are reported, never raised.

    ``name`` is the ``source`` column (default: the folder name). ``decode`` fully decodes
    each image to catch truncated files (see :func:`read_image_header`). Skip reasons:
    ``corrupt_image``, ``image_without_label``, ``label_without_image``, ``no_boxes``
    (empty label file: a background image, which one-row-per-box records cannot hold),
    ``malformed_label``, ``class_out_of_range``, ``degenerate_box``, ``box_out_of_bounds``,
    ``duplicate_box``, ``duplicate_stem``, ``unreadable_label``. ``class_code`` and
    ``class_name`` are both the dataset's label name.
    """
    base = Path(os.path.abspath(root))
    names = read_yolo_names(base)
    source = name or base.name
    report = IngestReport(source=source, kind="yolo", root=str(base))
    show = sys.stderr.isatty() if progress is None else progress

    images: list[tuple[Path, Path]] = []  # (image, label path)
    expected_labels: set[Path] = set()
    label_dirs: list[Path] = []
    for img_dir in _image_dirs(base):
        lbl_dir = img_dir.parent / "labels"
        label_dirs.append(lbl_dir)
        for path in _walk_files(img_dir):
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            label = (lbl_dir / path.relative_to(img_dir)).with_suffix(".txt")
            if label in expected_labels:
                report.skip(path, "duplicate_stem", f"another image already uses {label.name}")
                continue
            expected_labels.add(label)
            images.append((path, label))
    report.images_found = len(images) + report.skipped_counts.get("duplicate_stem", 0)

    for lbl_dir in label_dirs:
        if lbl_dir.is_dir():
            for path in _walk_files(lbl_dir):
                if path.suffix.lower() == ".txt" and path not in expected_labels:
                    report.skip(path, "label_without_image")

    records: list[BoxRecord] = []
    for image, label in tqdm(images, desc=f"yolo:{source}", unit="img", disable=not show):
        if not label.is_file():
            report.skip(image, "image_without_label")
            continue
        try:
            header = read_image_header(image, decode=decode)
        except ValueError as exc:
            report.skip(image, "corrupt_image", str(exc))
            continue
        try:
            text = label.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            report.skip(label, "unreadable_label", str(exc))
            continue
        w, h = header.width, header.height
        boxes: list[tuple[int, tuple[float, float, float, float]]] = []
        seen: set[tuple[str, ...]] = set()
        for line_no, line in enumerate(text.splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{label}:{line_no}"
            if tuple(parts) in seen:
                report.skip(where, "duplicate_box", line.strip())
                continue
            seen.add(tuple(parts))
            parsed = parse_line(parts, names)
            if isinstance(parsed, str):
                report.skip(where, parsed, line.strip()[:200])
                continue
            cls, (nx1, ny1, nx2, ny2) = parsed
            x1, x2 = round(max(0.0, nx1) * w, 3), round(min(1.0, nx2) * w, 3)
            y1, y2 = round(max(0.0, ny1) * h, 3), round(min(1.0, ny2) * h, 3)
            if x2 <= x1 or y2 <= y1:
                report.skip(where, "degenerate_box", line.strip()[:200])
                continue
            boxes.append((cls, (x1, y1, x2, y2)))
        if not boxes:
            report.skip(label, "no_boxes", "no usable box: background image or all lines bad")
            continue
        kind = "single" if len(boxes) == 1 else "combo"
        group = yolo_group(image.stem)
        for cls, (x1, y1, x2, y2) in boxes:
            records.append(
                BoxRecord(
                    image_path=str(image),
                    group=group,
                    split="",
                    kind=kind,
                    image_width=w,
                    image_height=h,
                    x1=x1,
                    y1=y1,
                    x2=x2,
                    y2=y2,
                    class_code=names[cls],
                    class_name=names[cls],
                    source=source,
                )
            )
    report.finish(records)
    return records, report
