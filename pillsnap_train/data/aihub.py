"""Read the Korean AIHub oral-drug image layout into :class:`BoxRecord` rows.

Layout (folder names may use the English ``single``/``combo`` or AIHub's own ``단일``/``조합``)::

    TS_<n>_single/K-001900/<stem>.png                 single-pill photos, one class per folder
    TL_<n>_single/K-001900_json/<stem>.json            their labels, same stem
    TS_<n>_combo/<combo-id>/<stem>.png                 several pills per photo
    TL_<n>_combo/<combo-id>_json/<K-code>/<stem>.json  one JSON *per pill* per photo

Each JSON is COCO-like: ``images[0]`` carries the photo size and the drug's facts
(``dl_mapping_code``, ``dl_name``, ``dl_company``, ``drug_shape``, ``color_class1``,
``print_front``, ``form_code_name``/``dl_custom_shape`` ...), ``annotations[*].bbox`` is
``[x, y, w, h]`` pixels. JSONs are matched to photos by file stem (not by folder, which
archives re-pack), and all per-pill JSONs of one combo photo merge into one image with
several boxes. Anything unmatched or unreadable is reported and skipped; the photo stem is
its group.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tqdm import tqdm

from .records import (
    BoxRecord,
    ImageHeader,
    IngestReport,
    raw_box_to_upright,
    read_image_header,
)
from .yolo import IMAGE_EXTENSIONS

__all__ = ["AIHUB_METADATA_FIELDS", "aihub_metadata", "read_aihub"]

_DIR: Final = re.compile(r"^(?P<role>TS|TL)_(?P<tag>.+)_(?P<kind>single|combo|단일|조합)$", re.I)
_KIND: Final = {"single": "single", "단일": "single", "combo": "combo", "조합": "combo"}
_KCODE: Final = re.compile(r"^K-\d{6}$")

#: AIHub ``images[0]`` field -> metadata key. Only drug-level facts (not per-photo ones
#: like background colour or camera angle), because class_table() aggregates metadata per
#: class and ships it in the bundle's labels.json.
AIHUB_METADATA_FIELDS: Final = (
    ("dl_company", "manufacturer"),
    ("drug_shape", "shape"),
    ("color_class1", "colour"),
    ("print_front", "print_front"),
    ("form_code_name", "form"),
    ("dl_custom_shape", "form"),  # fallback when form_code_name is empty
    ("dl_name_en", "name_en"),
)


def _nfc(text: str) -> str:
    # Archives unpacked on macOS store Hangul names decomposed (NFD); compare in NFC.
    return unicodedata.normalize("NFC", text)


def aihub_metadata(info: dict[str, Any]) -> dict[str, str]:
    """Class metadata from an AIHub ``images[0]`` dict; empty values are left out."""
    out: dict[str, str] = {}
    for src, key in AIHUB_METADATA_FIELDS:
        value = info.get(src)
        if value is None or key in out:
            continue
        text = str(value).strip()
        if text:
            out[key] = text
    return out


@dataclass
class _Label:
    json_path: Path
    info: dict[str, Any]
    code: str
    bboxes: list[Any]


def _find_roots(root: Path) -> list[tuple[str, str, Path]]:
    """``(role, kind, folder)`` for every TS_/TL_ folder under root (root included)."""
    found: list[tuple[str, str, Path]] = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        match = _DIR.match(_nfc(here.name))
        if match:
            found.append((match["role"].upper(), _KIND[match["kind"].lower()], here))
            dirnames.clear()  # do not look for TS_/TL_ inside a TS_/TL_ folder
    return found


def _files(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        out.extend(
            Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix.lower() in suffixes
        )
    return out


def _folder_code(json_path: Path, kind: str) -> str | None:
    """K-code implied by the label's folder (``K-xxxxxx_json`` or combo's ``K-xxxxxx``)."""
    name = _nfc(json_path.parent.name)
    if kind == "single" and name.endswith("_json"):
        name = name[: -len("_json")]
    return name if _KCODE.match(name) else None


def _parse_json(path: Path, kind: str, report: IngestReport) -> _Label | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.skip(path, "invalid_json", str(exc)[:200])
        return None
    images: Any = data.get("images") if isinstance(data, dict) else None
    if isinstance(images, dict):
        images = [images]
    if not isinstance(images, list) or not images or not isinstance(images[0], dict):
        report.skip(path, "invalid_json", "no images[0] object")
        return None
    info: dict[str, Any] = images[0]
    annotations: Any = data.get("annotations")
    if not isinstance(annotations, list) or not annotations:
        report.skip(path, "no_boxes", "no annotations")
        return None
    folder = _folder_code(path, kind)
    code = str(info.get("dl_mapping_code") or "").strip() or folder
    if not code:
        report.skip(path, "missing_class", "no dl_mapping_code and no K-code folder")
        return None
    if folder and folder != code:
        report.warn(path, "code_mismatch", f"folder says {folder}, JSON says {code}; using JSON")
    bboxes = [a.get("bbox") if isinstance(a, dict) else None for a in annotations]
    return _Label(path, info, code, bboxes)


Box = tuple[float, float, float, float]


def _as_box(raw: Any) -> Box | None:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        return None
    try:
        x, y, w, h = (float(v) for v in raw)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    return (x, y, x + w, y + h)


def _frame_mapper(
    info: dict[str, Any], header: ImageHeader
) -> tuple[str, Callable[[Box], Box]] | None:
    """How to move JSON pixel boxes into the upright image frame, or None if impossible.

    AIHub's JSON size normally equals the photo's; if it is the stored (pre-EXIF-rotation)
    size the boxes are rotated, and a same-aspect size (a resized re-export) is scaled.
    """
    try:
        jw, jh = int(info.get("width") or 0), int(info.get("height") or 0)
    except (TypeError, ValueError):
        jw = jh = 0
    if jw <= 0 or jh <= 0 or (jw, jh) == (header.width, header.height):
        return ("same", lambda b: b)
    if (jw, jh) == (header.raw_width, header.raw_height):
        return (
            "raw",
            lambda b: raw_box_to_upright(
                b, header.orientation, header.raw_width, header.raw_height
            ),
        )
    aspect = header.width / header.height
    if abs(jw / jh - aspect) < 0.01 * aspect:
        sx, sy = header.width / jw, header.height / jh
        return ("scale", lambda b: (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy))
    return None


def read_aihub(
    root: str | os.PathLike[str],
    *,
    name: str = "aihub",
    decode: bool = True,
    progress: bool | None = None,
) -> tuple[list[BoxRecord], IngestReport]:
    """Read every labelled pill under an AIHub root; bad items are reported, never raised.

    Raises only when ``root`` holds no ``TS_*``/``TL_*`` folder at all (wrong path). Skip
    reasons: ``invalid_json``, ``no_boxes``, ``missing_class``, ``json_without_image``,
    ``image_without_json``, ``duplicate_image``, ``corrupt_image``, ``size_mismatch``,
    ``invalid_box``, ``box_out_of_bounds``, ``duplicate_box``. Warnings (kept):
    ``code_mismatch``, ``box_clipped``, ``size_scaled``, ``single_with_many_boxes``.
    """
    base = Path(os.path.abspath(root))
    report = IngestReport(source=name, kind="aihub", root=str(base))
    show = sys.stderr.isatty() if progress is None else progress
    roots = _find_roots(base)
    if not roots:
        raise FileNotFoundError(f"{base}: no TS_*_single/combo or TL_*_single/combo folders")

    images: dict[tuple[str, str], Path] = {}
    for role, kind, folder in roots:
        if role != "TS":
            continue
        for path in _files(folder, IMAGE_EXTENSIONS):
            key = (kind, _nfc(path.stem))
            if key in images:
                report.skip(path, "duplicate_image", f"same stem as {images[key]}")
                continue
            images[key] = path
    report.images_found = len(images) + report.skipped_counts.get("duplicate_image", 0)

    labels: dict[tuple[str, str], list[_Label]] = {}
    json_files = [
        (kind, p)
        for role, kind, folder in roots
        if role == "TL"
        for p in _files(folder, frozenset({".json"}))
    ]
    for kind, path in tqdm(json_files, desc=f"aihub:{name} json", unit="file", disable=not show):
        label = _parse_json(path, kind, report)
        if label is None:
            continue
        key = (kind, _nfc(path.stem))
        if key not in images:
            alt = _nfc(Path(str(label.info.get("file_name") or "")).stem)
            key = (kind, alt) if (kind, alt) in images else key
        if key not in images:
            report.skip(path, "json_without_image", f"no {kind} photo with stem {path.stem}")
            continue
        labels.setdefault(key, []).append(label)

    records: list[BoxRecord] = []
    for key, image in tqdm(
        sorted(images.items()), desc=f"aihub:{name} img", unit="img", disable=not show
    ):
        kind, stem = key
        found = labels.get(key)
        if not found:
            report.skip(image, "image_without_json")
            continue
        try:
            header = read_image_header(image, decode=decode)
        except ValueError as exc:
            report.skip(image, "corrupt_image", str(exc))
            continue
        boxes = _image_boxes(found, header, report)
        if not boxes:
            report.skip(image, "no_boxes", "every box in its JSON files was skipped")
            continue
        if kind == "single" and len(boxes) > 1:
            report.warn(image, "single_with_many_boxes", f"{len(boxes)} boxes; kept as combo")
            kind = "combo"
        for label, (x1, y1, x2, y2) in boxes:
            records.append(
                BoxRecord(
                    image_path=str(image),
                    group=stem,
                    split="",
                    kind=kind,
                    image_width=header.width,
                    image_height=header.height,
                    x1=x1,
                    y1=y1,
                    x2=x2,
                    y2=y2,
                    class_code=label.code,
                    class_name=str(label.info.get("dl_name") or "").strip() or label.code,
                    source=name,
                    metadata=aihub_metadata(label.info),
                )
            )
    report.finish(records)
    return records, report


def _image_boxes(
    found: list[_Label], header: ImageHeader, report: IngestReport
) -> list[tuple[_Label, Box]]:
    """Validated upright-frame boxes of one photo, merged over its per-pill JSON files."""
    w, h = header.width, header.height
    out: list[tuple[_Label, Box]] = []
    seen: set[tuple[str, tuple[float, ...]]] = set()
    for label in found:
        mapper = _frame_mapper(label.info, header)
        if mapper is None:
            report.skip(
                label.json_path,
                "size_mismatch",
                f"JSON {label.info.get('width')}x{label.info.get('height')} vs image {w}x{h}",
            )
            continue
        if mapper[0] == "scale":
            report.warn(label.json_path, "size_scaled", f"JSON size scaled to image {w}x{h}")
        for i, raw in enumerate(label.bboxes):
            where = f"{label.json_path}#annotations[{i}]"
            box = _as_box(raw)
            if box is None:
                report.skip(where, "invalid_box", repr(raw)[:200])
                continue
            box = mapper[1](box)
            clipped = (
                max(0.0, box[0]),
                max(0.0, box[1]),
                min(float(w), box[2]),
                min(float(h), box[3]),
            )
            area = (box[2] - box[0]) * (box[3] - box[1])
            kept = max(0.0, clipped[2] - clipped[0]) * max(0.0, clipped[3] - clipped[1])
            if kept < 0.5 * area:
                report.skip(where, "box_out_of_bounds", f"{box} outside {w}x{h}")
                continue
            if max(abs(a - b) for a, b in zip(box, clipped, strict=True)) > 1.0:
                report.warn(where, "box_clipped", f"{box} clipped to {w}x{h}")
            final = tuple(round(v, 3) for v in clipped)
            key = (label.code, final)
            if key in seen:
                report.skip(where, "duplicate_box", f"{label.code} {final}")
                continue
            seen.add(key)
            out.append((label, (final[0], final[1], final[2], final[3])))
    return out
