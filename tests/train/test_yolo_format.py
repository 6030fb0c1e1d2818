"""The one YOLO label-line writer and parser: round trip, pixel convention, clipping, reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from pillsnap_train.data.yolo_format import (
    clipped_lines,
    format_line,
    inclusive_to_edges,
    parse_line,
    write_label_file,
)


def test_format_then_parse_round_trips() -> None:
    line = format_line(3, (12.5, 40.0, 52.5, 100.0), 200, 160)
    assert line == "3 0.162500 0.437500 0.200000 0.375000"
    parsed = parse_line(line.split(), {3})
    assert not isinstance(parsed, str)
    cls, box = parsed
    assert cls == 3
    assert box == pytest.approx((12.5 / 200, 40 / 160, 52.5 / 200, 100 / 160), abs=1e-6)


def test_inclusive_boxes_are_one_pixel_wider_than_their_index_span() -> None:
    # PIL's rectangle (10, 20)-(19, 29) covers pixels 10..19: 10 px wide, centre at 15.0.
    assert inclusive_to_edges((10, 20, 19, 29)) == (10, 20, 20, 30)
    assert format_line(1, inclusive_to_edges((10, 20, 19, 29)), 100, 50) == (
        "1 0.150000 0.500000 0.100000 0.200000"
    )


def test_clipped_lines_clip_to_the_image_and_drop_slivers() -> None:
    lines = clipped_lines([(-5, -3, 30.5, 20.25), (10, 10, 10.5, 40), (90, 0, 130, 10)], 100, 50)
    assert lines == [
        format_line(0, (0.0, 0.0, 30.5, 20.25), 100, 50),
        format_line(0, (90.0, 0.0, 100.0, 10.0), 100, 50),
    ]
    assert clipped_lines([(0, 0, 5, 5)], 10, 10, cls=2)[0].startswith("2 ")
    with pytest.raises(ValueError, match="xyxy"):
        clipped_lines([(1, 2, 3)], 10, 10)


def test_label_files_end_in_a_newline_and_background_files_are_empty(tmp_path: Path) -> None:
    write_label_file(tmp_path / "a.txt", ["0 0.5 0.5 0.1 0.1", "0 0.2 0.2 0.1 0.1"])
    assert (tmp_path / "a.txt").read_bytes() == b"0 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n"
    write_label_file(tmp_path / "b.txt", [])
    assert (tmp_path / "b.txt").read_bytes() == b""


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 0.5 0.5", "malformed_label"),
        ("0 0.5 0.5 0.1 0.1 0.2", "malformed_label"),  # odd polygon
        ("x 0.5 0.5 0.1 0.1", "malformed_label"),
        ("1.5 0.5 0.5 0.1 0.1", "malformed_label"),
        ("0 nan 0.5 0.1 0.1", "malformed_label"),
        ("7 0.5 0.5 0.1 0.1", "class_out_of_range"),
        ("0 0.5 0.5 0 0.1", "degenerate_box"),
        ("0 0.99 0.5 0.1 0.1", "box_out_of_bounds"),
    ],
)
def test_bad_lines_give_their_reason(line: str, reason: str) -> None:
    assert parse_line(line.split(), {0, 1}) == reason


def test_polygons_become_their_box_and_any_class_passes_without_a_class_set() -> None:
    polygon = "9 0.1 0.2 0.3 0.2 0.2 0.4"
    assert parse_line(polygon.split()) == (9, (0.1, 0.2, 0.3, 0.4))
