"""Records CSV round trip, validation, class table, image headers and EXIF geometry."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from pillsnap_train.data.records import (
    RECORD_COLUMNS,
    BoxRecord,
    class_table,
    group_by_image,
    raw_box_to_upright,
    read_image_header,
    read_records,
    write_records,
)


def _rec(path: str, code: str = "K-000001", **kw: object) -> BoxRecord:
    fields: dict[str, object] = {
        "image_path": path,
        "group": Path(path).stem,
        "split": "train",
        "kind": "single",
        "image_width": 96,
        "image_height": 128,
        "x1": 1.5,
        "y1": 2.25,
        "x2": 40.125,
        "y2": 60.0,
        "class_code": code,
        "class_name": "마그밀정",
        "source": "src",
        "metadata": {"manufacturer": "삼남제약(주)", "shape": "원형"},
    }
    fields.update(kw)
    return BoxRecord(**fields)  # type: ignore[arg-type]


def test_round_trip_relative_inside_absolute_outside(tmp_path: Path) -> None:
    inside = tmp_path / "ds" / "images" / 'a,b "q".png'  # CSV-hostile name
    outside = tmp_path.parent / "elsewhere" / "x.png"
    records = [
        _rec(str(inside), metadata={"k": 'v,"w"\n'}),
        _rec(
            str(outside), code="K-000002", split="val", kind="combo", x1=0.1, x2=0.30000000000000004
        ),
    ]
    csv_path = tmp_path / "ds" / "records.csv"
    write_records(csv_path, records)

    rows = list(csv.reader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == RECORD_COLUMNS
    assert rows[1][0] == 'images/a,b "q".png'  # stored relative to the CSV folder
    assert rows[2][0] == str(outside)  # outside the folder: absolute
    assert read_records(csv_path) == records  # exact floats, unicode, metadata


def test_relative_paths_follow_the_csv_when_moved(tmp_path: Path) -> None:
    src = tmp_path / "a"
    write_records(src / "m.csv", [_rec(str(src / "img" / "p.png"))])
    moved = tmp_path / "b"
    (src).rename(moved)
    assert read_records(moved / "m.csv")[0].image_path == str(moved / "img" / "p.png")


def test_write_is_deterministic_and_atomic(tmp_path: Path) -> None:
    records = [_rec(str(tmp_path / f"{i}.png"), code=f"K-{i:06d}") for i in range(5)]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_records(a, records)
    write_records(b, records)
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_write_refuses_unassigned_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="assign_splits"):
        write_records(tmp_path / "m.csv", [_rec("/x.png", split="")])
    write_records(tmp_path / "m.csv", [_rec("/x.png", split="")], require_split=False)


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("split", "training", "split must be one of"),
        ("x2", "0.5", "positive width"),
        ("image_width", "abc", "invalid literal"),
        ("metadata_json", "[1]", "string -> string"),
        ("y1", "nan", "finite"),
    ],
)
def test_read_rejects_bad_rows_with_line_number(
    tmp_path: Path, column: str, value: str, match: str
) -> None:
    csv_path = tmp_path / "m.csv"
    write_records(csv_path, [_rec("/a.png"), _rec("/b.png")])
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    rows[1][column] = value
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, RECORD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=match) as err:
        read_records(csv_path)
    assert "m.csv:3" in str(err.value)


def test_read_rejects_foreign_csv(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_records(tmp_path / "m.csv")


@pytest.mark.parametrize(
    "changes",
    [{"kind": "multi"}, {"x2": 1.0}, {"y2": 2.25}, {"image_width": 0}, {"class_code": ""}],
)
def test_box_record_validates(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _rec("/a.png", **changes)  # type: ignore[arg-type]


def test_class_table_sorted_majority_and_order_independent() -> None:
    records = [
        _rec("/1.png", code="K-000200", class_name="B", metadata={"shape": "oval"}),
        _rec("/2.png", code="K-000100", class_name="A", metadata={"shape": "round"}),
        _rec("/3.png", code="K-000100", class_name="A-typo", metadata={"shape": "round"}),
        _rec("/4.png", code="K-000100", class_name="A", metadata={"shape": "oval", "c": "x"}),
    ]
    table = class_table(records)
    assert [c.code for c in table] == ["K-000100", "K-000200"]
    assert table[0].name == "A"
    assert dict(table[0].metadata) == {"c": "x", "shape": "round"}
    assert class_table(reversed(records)) == table


def test_group_by_image_keeps_first_seen_order() -> None:
    a, b = _rec("/b.png"), _rec("/a.png")
    grouped = group_by_image([a, b, replace(a, class_code="K-000009")])
    assert list(grouped) == ["/b.png", "/a.png"]
    assert len(grouped["/b.png"]) == 2


def _jpeg(path: Path, size: tuple[int, int], orientation: int | None = None) -> Path:
    img = Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes())
    return path


def test_header_swaps_size_for_rotated_exif(tmp_path: Path) -> None:
    plain = read_image_header(_jpeg(tmp_path / "a.jpg", (40, 30)))
    assert (plain.width, plain.height, plain.orientation) == (40, 30, 1)
    rotated = read_image_header(_jpeg(tmp_path / "b.jpg", (40, 30), orientation=6))
    assert (rotated.width, rotated.height) == (30, 40)
    assert (rotated.raw_width, rotated.raw_height) == (40, 30)


def test_header_decode_catches_truncated_files(tmp_path: Path) -> None:
    path = tmp_path / "t.jpg"
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    img.save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert read_image_header(path, decode=False).width == 64  # header alone looks fine
    with pytest.raises(ValueError, match="cannot read image"):
        read_image_header(path, decode=True)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError):
        read_image_header(tmp_path / "junk.png", decode=False)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_raw_box_to_upright_matches_pil_exif_transpose(orientation: int) -> None:
    raw_w, raw_h = 37, 23
    box = (5, 3, 14, 9)  # pixel region [x1, x2) x [y1, y2)
    arr = np.zeros((raw_h, raw_w), np.uint8)
    arr[box[1] : box[3], box[0] : box[2]] = 255
    img = Image.fromarray(arr)
    img.getexif()[0x0112] = orientation
    img.info["exif"] = img.getexif().tobytes()
    upright = ImageOps.exif_transpose(img)
    assert upright is not None
    expected = upright.getbbox()
    got = raw_box_to_upright(tuple(map(float, box)), orientation, raw_w, raw_h)  # type: ignore[arg-type]
    assert got == tuple(map(float, expected))  # type: ignore[arg-type]
