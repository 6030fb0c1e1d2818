"""AIHub reader: fixture layout, per-pill JSON merging, metadata, and tolerance to bad files."""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pillsnap_train.data.aihub import aihub_metadata, read_aihub
from pillsnap_train.data.fixtures import fixture_class, make_aihub_fixture
from pillsnap_train.data.records import group_by_image, raw_box_to_upright


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_aihub_fixture(tmp_path_factory.mktemp("aihub") / "src", seed=3)


@pytest.fixture
def root(fixture_root: Path, tmp_path: Path) -> Path:
    """A private copy, for tests that damage the tree."""
    return Path(shutil.copytree(fixture_root, tmp_path / "copy"))


def test_fixture_reads_with_defects_reported(fixture_root: Path) -> None:
    records, report = read_aihub(fixture_root, name="ai", progress=False)
    assert report.skipped_counts == {"corrupt_image": 1, "json_without_image": 1}
    assert report.warnings == []
    images = group_by_image(records)
    assert len(images) == report.images_used == 4 * 6 + 4
    assert report.images_found == report.images_used + 1
    assert report.classes == 4
    singles = [b for b in images.values() if b[0].kind == "single"]
    combos = [b for b in images.values() if b[0].kind == "combo"]
    assert len(singles) == 24 and all(len(b) == 1 for b in singles)
    # Per-pill JSONs of one combo photo merged into one image with several distinct classes.
    assert len(combos) == 4
    assert all(2 <= len(b) == len({r.class_code for r in b}) for b in combos)
    for path, boxes in images.items():
        assert {r.group for r in boxes} == {Path(path).stem}
        assert {r.source for r in boxes} == {"ai"}
        assert (boxes[0].image_width, boxes[0].image_height) == (96, 128)


def test_codes_names_metadata_and_boxes_come_from_json(fixture_root: Path) -> None:
    records, _ = read_aihub(fixture_root, progress=False)
    code, colour, shape = fixture_class(2)
    rec = next(r for r in records if r.class_code == code and r.kind == "single")
    doc = json.loads(
        (
            fixture_root / "TL_1_single" / f"{code}_json" / f"{Path(rec.image_path).stem}.json"
        ).read_text(encoding="utf-8")
    )
    info, (ann,) = doc["images"][0], doc["annotations"]
    x, y, w, h = ann["bbox"]
    assert rec.box == (x, y, x + w, y + h)
    assert rec.class_name == info["dl_name"]
    assert dict(rec.metadata) == {
        "manufacturer": info["dl_company"],
        "shape": info["drug_shape"],
        "colour": info["color_class1"],
        "print_front": info["print_front"],
        "form": info["form_code_name"],
        "name_en": info["dl_name_en"],
    }
    assert colour.title() in rec.metadata["name_en"] and shape.title() in rec.metadata["name_en"]


def test_fixture_boxes_sit_on_their_pills(fixture_root: Path) -> None:
    """Each class's box has one colour, far from every other class: learnable."""
    records, _ = read_aihub(fixture_root, progress=False)
    pixels: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in records:
        with Image.open(r.image_path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.int16)
        cx, cy = int((r.x1 + r.x2) / 2), int(r.y1 + (r.y2 - r.y1) / 4 + 1)
        pixels[r.class_code].append(arr[cy, cx])
    means = {c: np.mean(p, axis=0) for c, p in pixels.items()}
    for code, values in pixels.items():
        assert np.abs(np.stack(values) - means[code]).max() < 30
    vals = list(means.values())
    assert min(np.abs(a - b).max() for i, a in enumerate(vals) for b in vals[i + 1 :]) > 60


def test_metadata_form_fallback_and_empty_values() -> None:
    meta = aihub_metadata(
        {"dl_company": " Co ", "form_code_name": "", "dl_custom_shape": "정제", "print_front": ""}
    )
    assert meta == {"manufacturer": "Co", "form": "정제"}


def _json_files(root: Path, kind: str) -> list[Path]:
    return sorted((root / f"TL_1_{kind}").rglob("*.json"))


def test_bad_files_are_reported_and_skipped(root: Path) -> None:
    singles = [
        p for p in _json_files(root, "single") if "_9_9_" not in p.name and "_8_8_" not in p.name
    ]
    singles[0].write_text("{not json", encoding="utf-8")  # invalid JSON -> image has no JSON
    doc = json.loads(singles[1].read_text(encoding="utf-8"))
    doc["annotations"][0]["bbox"] = [500, 500, 20, 20]
    singles[1].write_text(json.dumps(doc), encoding="utf-8")
    doc = json.loads(singles[2].read_text(encoding="utf-8"))
    doc["annotations"][0]["bbox"] = [1, 2, "x", 4]
    singles[2].write_text(json.dumps(doc), encoding="utf-8")
    doc = json.loads(singles[3].read_text(encoding="utf-8"))
    del doc["annotations"]
    singles[3].write_text(json.dumps(doc), encoding="utf-8")
    # A combo pill JSON duplicated under another K-code folder: the box must not double.
    combo = _json_files(root, "combo")[0]
    dup_dir = combo.parent.parent / "K-999999"
    dup_dir.mkdir()
    shutil.copy(combo, dup_dir / combo.name)

    records, report = read_aihub(root, progress=False)
    assert report.skipped_counts == {
        "corrupt_image": 1,
        "json_without_image": 1,
        "invalid_json": 1,
        "image_without_json": 2,  # photos of the invalid and the annotation-less JSON
        "no_boxes": 3,  # the annotation-less JSON, and the two photos whose boxes were bad
        "box_out_of_bounds": 1,
        "invalid_box": 1,
        "duplicate_box": 1,
    }
    assert report.warning_counts == {"code_mismatch": 1}
    assert len(group_by_image(records)) == 28 - 4


def test_missing_code_falls_back_to_folder_and_size_is_scaled(root: Path) -> None:
    path = next(p for p in _json_files(root, "combo"))
    doc = json.loads(path.read_text(encoding="utf-8"))
    del doc["images"][0]["dl_mapping_code"]
    info = doc["images"][0]
    info["width"], info["height"] = 192, 256  # labelled at twice the stored resolution
    x, y, w, h = doc["annotations"][0]["bbox"]
    doc["annotations"][0]["bbox"] = [2 * x, 2 * y, 2 * w, 2 * h]
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    records, report = read_aihub(root, progress=False)
    rec = next(
        r
        for r in records
        if Path(r.image_path).stem == path.stem and r.class_code == path.parent.name
    )
    assert rec.box == (x, y, x + w, y + h)
    assert report.warning_counts == {"size_scaled": 1}


def test_korean_nfd_folder_names(root: Path) -> None:
    for old, new in (
        ("TS_1_single", "TS_1_단일"),
        ("TL_1_combo", "TL_1_조합"),
        ("TS_1_combo", "TS_1_조합"),
    ):
        (root / old).rename(root / unicodedata.normalize("NFD", new))
    records, report = read_aihub(root, progress=False)
    assert len(group_by_image(records)) == 28
    assert report.skipped_counts == {"corrupt_image": 1, "json_without_image": 1}


def test_wrong_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="TS_"):
        read_aihub(tmp_path)


def test_fixture_is_deterministic(tmp_path: Path) -> None:
    a = make_aihub_fixture(tmp_path / "a", n_classes=3, singles_per_class=2, n_combos=2, seed=5)
    b = make_aihub_fixture(tmp_path / "b", n_classes=3, singles_per_class=2, n_combos=2, seed=5)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    with pytest.raises(ValueError):
        make_aihub_fixture(tmp_path / "c", n_classes=1, n_combos=1)


def test_json_in_stored_frame_of_exif_rotated_photo(root: Path) -> None:
    """Labels drawn on the stored pixels of an EXIF-rotated photo are moved upright."""
    json_path = next(p for p in _json_files(root, "single") if "_9_9_" not in p.name)
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    x, y, w, h = doc["annotations"][0]["bbox"]
    upright_box = (float(x), float(y), float(x + w), float(y + h))
    image = next(root.glob(f"TS_1_single/*/{json_path.stem}.png"))
    # Store the photo rotated (what a phone writes) with orientation 6 = "rotate to view".
    stored = Image.open(image).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.unlink()
    stored.save(image.with_suffix(".jpg"), exif=exif.tobytes(), quality=95)
    rx1, ry1, rx2, ry2 = raw_box_to_upright(upright_box, 8, 96, 128)
    doc["images"][0]["width"], doc["images"][0]["height"] = 128, 96
    doc["annotations"][0]["bbox"] = [rx1, ry1, rx2 - rx1, ry2 - ry1]
    json_path.write_text(json.dumps(doc), encoding="utf-8")
    records, report = read_aihub(root, progress=False)
    rec = next(r for r in records if r.group == json_path.stem)
    assert (rec.image_width, rec.image_height) == (96, 128)
    assert rec.box == upright_box
    assert report.warnings == []
