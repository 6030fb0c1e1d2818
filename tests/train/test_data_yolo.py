"""YOLO / Roboflow reader: real pushin-pill folder, synthetic fixture, and bad inputs."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pillsnap_train.data.fixtures import make_yolo_fixture
from pillsnap_train.data.records import group_by_image
from pillsnap_train.data.splits import assign_splits, split_leaks
from pillsnap_train.data.yolo import read_yolo, read_yolo_names, yolo_group

PUSHIN = Path("/work/shared/data/pushin-pill-train")


@pytest.mark.skipif(not PUSHIN.is_dir(), reason="real pushin-pill data not on this machine")
def test_real_pushin_pill_folder() -> None:
    records, report = read_yolo(PUSHIN, name="pushin-pill")
    assert report.skipped == []
    assert report.images_found == report.images_used == 246
    assert len(records) == report.boxes == 1239
    assert len({r.group for r in records}) == 82
    assert len({r.class_code for r in records}) == report.classes == 17
    images = group_by_image(records)
    # README: every distinct photo is present 3 times; 24 photos are multi-pill scenes.
    per_group = Counter(r.group for r in {(r.image_path, r.group): r for r in records}.values())
    assert set(per_group.values()) == {3}
    assert sum(1 for boxes in images.values() if boxes[0].kind == "combo") == 24 * 3
    for r in records:
        assert 0 <= r.x1 < r.x2 <= r.image_width and 0 <= r.y1 < r.y2 <= r.image_height
        assert {r.image_width, r.image_height} == {480, 640}

    split = assign_splits(records, val_fraction=0.2, seed=0)
    assert split_leaks(split) == []
    train = {r.group for r in split if r.split == "train"}
    val = {r.group for r in split if r.split == "val"}
    assert train and val and not train & val
    assert {r.class_code for r in split if r.split == "val"} == {r.class_code for r in records}


@pytest.mark.parametrize(
    ("stem", "group"),
    [
        ("IMG_6108-Medium_jpeg.rf.7c6614514255e810281e73d84420a9ef", "IMG_6108-Medium"),
        ("a_b_png.rf.00ff", "a_b"),
        ("photo_JPG.rf.AbC123", "photo"),
        ("plain_photo", "plain_photo"),
        ("x_jpeg.rf.", "x_jpeg.rf."),  # no hash: not a Roboflow name
    ],
)
def test_yolo_group(stem: str, group: str) -> None:
    assert yolo_group(stem) == group


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_fixture(tmp_path_factory.mktemp("yolo") / "flat", seed=1)


def test_fixture_reads_with_every_defect_reported(flat: Path) -> None:
    records, report = read_yolo(flat, progress=False)
    assert report.source == "flat"
    assert report.skipped_counts == {
        "corrupt_image": 1,
        "label_without_image": 1,
        "image_without_label": 1,
        "malformed_label": 1,
        "class_out_of_range": 1,
    }
    photos = 3 * 3 + 2
    assert report.images_used == photos * 3 + 1
    assert report.images_found == report.images_used + 2  # + corrupt + unlabelled
    groups = defaultdict(set)
    for r in records:
        groups[r.group].add(r.image_path)
    assert len(groups) == photos + 1
    assert len(groups["plain_photo"]) == 1  # non-Roboflow name: group = stem
    assert all(len(v) == 3 for k, v in groups.items() if k != "plain_photo")
    reasons = {i.reason: i.path for i in report.skipped}
    assert reasons["malformed_label"].endswith("plain_photo.txt:2")
    assert reasons["label_without_image"].endswith("ghost.txt")


def test_fixture_labels_sit_on_the_pills(flat: Path) -> None:
    """The pixel a quarter down each box is the class colour: labels and pixels agree."""
    records, _ = read_yolo(flat, progress=False)
    by_class: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in records:
        with Image.open(r.image_path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.int16)
        cx, cy = int((r.x1 + r.x2) / 2), int(r.y1 + (r.y2 - r.y1) / 4 + 1)
        by_class[r.class_code].append(arr[cy, cx])
    for code, pixels in by_class.items():
        spread = np.ptp(np.stack(pixels), axis=0)
        assert spread.max() < 90, (code, spread)  # copies are re-lit by +-20, JPEG noise
    means = [np.mean(p, axis=0) for p in by_class.values()]
    gaps = [np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1 :]]
    assert min(gaps) > 60  # classes are far apart in colour


def test_mirrored_copies_have_mirrored_boxes(flat: Path) -> None:
    records, _ = read_yolo(flat, progress=False)
    copies = [r for r in records if r.group == "photo-000"]
    assert len(copies) == 3
    # Copy 0 as shot, copies 1-2 mirrored: two distinct x ranges, reflections of each other.
    xs = sorted({(round(r.x1), round(r.x2)) for r in copies})
    assert len(xs) == 2
    (a1, a2), (b1, b2) = xs
    assert abs((a1 + b2) - 96) <= 1 and abs((a2 + b1) - 96) <= 1
    assert len({(r.y1, r.y2) for r in copies}) == 1


def test_split_layout_groups_copies_across_folders(tmp_path: Path) -> None:
    root = make_yolo_fixture(tmp_path / "rf", layout="splits", names_as="list", seed=2)
    records, report = read_yolo(root, name="rf", progress=False)
    assert report.images_used == (3 * 3 + 2) * 3 + 1
    folders = defaultdict(set)
    for r in records:
        folders[r.group].add(Path(r.image_path).parent.parent.name)
    assert any(v == {"train", "valid"} for v in folders.values())
    split = assign_splits(records, val_fraction=0.3, seed=0)
    assert split_leaks(split) == []


def _write(
    root: Path, names: object, labels: dict[str, str], images: dict[str, Image.Image]
) -> None:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text(yaml.safe_dump({"names": names}))
    for stem, text in labels.items():
        (root / "labels" / f"{stem}.txt").write_text(text)
    for file, img in images.items():
        img.save(root / "images" / file)


def test_lines_polygons_bounds_and_duplicates(tmp_path: Path) -> None:
    img = Image.new("RGB", (200, 100), (90, 90, 90))
    text = "\n".join(
        [
            "0 0.5 0.5 0.2 0.4",
            "0 0.5 0.5 0.2 0.4",  # exact duplicate
            "1 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3",  # polygon -> box
            "1 0.99 0.5 0.04 0.2",  # slightly out: clipped to the edge
            "1 1.5 0.5 0.2 0.2",  # far out of bounds
            "0 0.5 0.5 0 0.2",  # zero width
            "1.5 0.5 0.5 0.2 0.2",  # fractional class
            "-1 0.5 0.5 0.2 0.2",  # negative class
            "0 a b c d",
            "",
        ]
    )
    _write(tmp_path, {"0": "alpha", "1": "beta"}, {"p": text}, {"p.png": img})
    records, report = read_yolo(tmp_path, progress=False)
    assert report.skipped_counts == {
        "duplicate_box": 1,
        "box_out_of_bounds": 1,
        "degenerate_box": 1,
        "malformed_label": 2,
        "class_out_of_range": 1,
    }
    boxes = {(r.class_code, r.box) for r in records}
    assert boxes == {
        ("alpha", (80.0, 30.0, 120.0, 70.0)),
        ("beta", (20.0, 10.0, 60.0, 30.0)),
        ("beta", (194.0, 40.0, 200.0, 60.0)),
    }
    assert {r.kind for r in records} == {"combo"}


def test_exif_rotated_image_uses_upright_size(tmp_path: Path) -> None:
    img = Image.new("RGB", (200, 100), (90, 90, 90))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait 100x200
    (tmp_path / "images").mkdir()
    img.save(tmp_path / "images" / "r.jpg", exif=exif.tobytes())
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "r.txt").write_text("0 0.5 0.25 0.5 0.1\n")
    (tmp_path / "data.yaml").write_text("names: [only]\n")
    (rec,), report = read_yolo(tmp_path, progress=False)
    assert (rec.image_width, rec.image_height) == (100, 200)
    assert rec.box == (25.0, 40.0, 75.0, 60.0)
    assert rec.kind == "single" and report.skipped == []


def test_empty_label_is_background_and_reported(tmp_path: Path) -> None:
    img = Image.new("RGB", (32, 32))
    _write(tmp_path, ["a"], {"bg": "", "p": "0 0.5 0.5 0.5 0.5"}, {"bg.png": img, "p.png": img})
    records, report = read_yolo(tmp_path, progress=False)
    assert len(records) == 1 and report.skipped_counts == {"no_boxes": 1}


def test_names_forms_and_missing_yaml(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("names:\n  0: a\n  2: c\n")
    assert read_yolo_names(tmp_path) == {0: "a", 2: "c"}
    (tmp_path / "data.yaml").write_text("names: 5\n")
    with pytest.raises(ValueError, match="names"):
        read_yolo_names(tmp_path)
    (tmp_path / "data.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"data\.yaml"):
        read_yolo(tmp_path)


def test_reader_is_deterministic(flat: Path) -> None:
    assert read_yolo(flat, progress=False) == read_yolo(flat, progress=False)
