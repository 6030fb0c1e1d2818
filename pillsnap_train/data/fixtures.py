"""Tiny synthetic datasets in the real on-disk layouts, for tests and end-to-end smoke runs.

Why synthetic: the real AIHub set is hundreds of GB and licensed for download only, and tests
must exercise the *readers* (folder layout, JSON merging, Roboflow copies, bad files), not
just the models. Every image is a few KB; a pill's class is a (colour, shape) pair drawn on
a varied textured background, so a small classifier can learn it in seconds while a model
that ignores either colour or shape cannot. Everything is deterministic for a seed.

Each fixture also plants the defects the readers must survive: one corrupt image and one
orphan label (plus, for YOLO, an unlabelled image and two bad label lines).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import yaml
from PIL import Image, ImageDraw

from .yolo_format import format_line, inclusive_to_edges, write_label_file

__all__ = [
    "FIXTURE_COLOURS",
    "FIXTURE_SHAPES",
    "fixture_class",
    "make_aihub_fixture",
    "make_yolo_fixture",
]

#: (English name, AIHub colour_class1, RGB). Chosen far apart and away from the
#: backgrounds' 140-215 grey/beige band so colour alone is always visible.
FIXTURE_COLOURS: Final = (
    ("red", "빨강", (220, 35, 35)),
    ("blue", "파랑", (35, 80, 225)),
    ("yellow", "노랑", (250, 215, 20)),
    ("green", "초록", (30, 160, 60)),
    ("orange", "주황", (245, 125, 15)),
    ("purple", "보라", (140, 45, 190)),
    ("white", "하양", (250, 250, 250)),
    ("black", "검정", (25, 25, 25)),
    ("brown", "갈색", (110, 60, 25)),
    ("pink", "분홍", (255, 105, 190)),
    ("cyan", "청록", (20, 200, 210)),
    ("navy", "남색", (20, 30, 95)),
)
#: (English name, AIHub drug_shape). Aspect ratios differ enough to tell apart at 32 px.
FIXTURE_SHAPES: Final = (
    ("circle", "원형"),
    ("ellipse", "타원형"),
    ("capsule", "장방형"),
    ("square", "사각형"),
)
_MAX_CLASSES: Final = len(FIXTURE_COLOURS) * len(FIXTURE_SHAPES)

RGB = tuple[int, int, int]
Array = npt.NDArray[np.uint8]


def fixture_class(index: int) -> tuple[str, str, str]:
    """``(code, colour, shape)`` of fixture class ``index``; every pair is unique (< 48)."""
    if not 0 <= index < _MAX_CLASSES:
        raise ValueError(f"fixtures support 0..{_MAX_CLASSES - 1} classes, got index {index}")
    colour = FIXTURE_COLOURS[index % len(FIXTURE_COLOURS)][0]
    # Shift the shape each time the colours wrap, so (colour, shape) never repeats.
    shape = FIXTURE_SHAPES[(index + index // len(FIXTURE_COLOURS)) % len(FIXTURE_SHAPES)][0]
    return f"K-{100 + 37 * index:06d}", colour, shape


def _background(rng: np.random.Generator, width: int, height: int) -> Array:
    """Muted random base colour + a gradient + pixel noise: nothing a model can key on."""
    base = rng.uniform(140, 215, size=3)
    tilt = rng.uniform(-25, 25, size=3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None] * tilt[None, None, :]
    noise = rng.normal(0.0, 6.0, size=(height, width, 3))
    img = base[None, None, :] + ramp + noise
    return np.clip(img, 0, 255).astype(np.uint8)


def _pill_size(shape: str, size: int, upright: bool) -> tuple[int, int]:
    ratio = {"circle": 1.0, "ellipse": 0.62, "capsule": 0.42, "square": 0.85}[shape]
    long_side = size if shape != "square" else round(size * 0.85)
    w, h = long_side, max(6, round(size * ratio))
    return (h, w) if upright else (w, h)


def _draw_pill(
    draw: ImageDraw.ImageDraw, shape: str, colour: RGB, box: tuple[int, int, int, int]
) -> None:
    x0, y0, x1, y1 = box
    outline = tuple(max(0, c - 60) for c in colour)
    if shape in ("circle", "ellipse"):
        draw.ellipse(box, fill=colour, outline=outline)
    elif shape == "capsule":
        radius = min(x1 - x0, y1 - y0) // 2
        draw.rounded_rectangle(box, radius=radius, fill=colour, outline=outline)
    else:
        draw.rounded_rectangle(box, radius=max(2, (x1 - x0) // 6), fill=colour, outline=outline)
    # A score line, like many real tablets: texture the classifier may ignore.
    cy = (y0 + y1) // 2
    draw.line((x0 + (x1 - x0) // 4, cy, x1 - (x1 - x0) // 4, cy), fill=outline, width=1)


def _jitter(rng: np.random.Generator, colour: RGB) -> RGB:
    r, g, b = (int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in colour)
    return (r, g, b)


def _colour_of(name: str) -> tuple[str, RGB]:
    for en, ko, rgb in FIXTURE_COLOURS:
        if en == name:
            return ko, rgb
    raise KeyError(name)


def _render(
    rng: np.random.Generator,
    size: tuple[int, int],
    pills: list[tuple[int, tuple[int, int, int, int]]],
) -> Image.Image:
    """Draw ``(class index, xyxy inclusive box)`` pills on a fresh background."""
    width, height = size
    img = Image.fromarray(_background(rng, width, height))
    draw = ImageDraw.Draw(img)
    for cls, box in pills:
        _, colour, shape = fixture_class(cls)
        _draw_pill(draw, shape, _jitter(rng, _colour_of(colour)[1]), box)
    return img


def _place_single(
    rng: np.random.Generator, cls: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    width, height = size
    _, _, shape = fixture_class(cls)
    span = min(width, height)
    pw, ph = _pill_size(
        shape, int(rng.integers(span * 2 // 5, span * 3 // 5 + 1)), rng.random() < 0.5
    )
    x0 = int(rng.integers(2, max(3, width - pw - 2)))
    y0 = int(rng.integers(2, max(3, height - ph - 2)))
    return (x0, y0, x0 + pw - 1, y0 + ph - 1)


def _place_grid(
    rng: np.random.Generator, classes: list[int], size: tuple[int, int]
) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Up to 4 non-overlapping pills, one per quadrant."""
    width, height = size
    cw, ch = width // 2, height // 2
    cells = [(0, 0), (1, 0), (0, 1), (1, 1)]
    order = rng.permutation(len(cells))
    out: list[tuple[int, tuple[int, int, int, int]]] = []
    for cls, cell_i in zip(classes, order, strict=False):
        cx, cy = cells[int(cell_i)]
        _, _, shape = fixture_class(cls)
        span = min(cw, ch)
        pw, ph = _pill_size(
            shape, int(rng.integers(span * 3 // 5, span * 4 // 5 + 1)), rng.random() < 0.5
        )
        x0 = cx * cw + int(rng.integers(1, max(2, cw - pw - 1)))
        y0 = cy * ch + int(rng.integers(1, max(2, ch - ph - 1)))
        out.append((cls, (x0, y0, x0 + pw - 1, y0 + ph - 1)))
    return out


# --------------------------------------------------------------------------- AIHub


def _aihub_json(
    file_name: str, size: tuple[int, int], cls: int, box: tuple[int, int, int, int]
) -> str:
    code, colour, shape = fixture_class(cls)
    colour_ko = _colour_of(colour)[0]
    shape_ko = dict(FIXTURE_SHAPES)[shape]
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    doc = {
        "images": [
            {
                "file_name": file_name,
                "width": size[0],
                "height": size[1],
                "imgfile": file_name,
                "drug_N": code,
                "dl_mapping_code": code,
                "dl_name": f"{colour_ko}{shape_ko}정 {cls}mg",
                "dl_name_en": f"{colour.title()} {shape.title()} Tab. {cls}mg",
                "dl_company": f"제약회사{cls % 3}(주)",
                "drug_shape": shape_ko,
                "color_class1": colour_ko,
                "color_class2": "",
                "print_front": f"P{cls}",
                "print_back": "",
                "form_code_name": "필름코팅정" if shape == "capsule" else "나정",
                "dl_custom_shape": "정제",
                "back_color": "연회색 배경",
                "camera_la": 70,
                "id": 1,
            }
        ],
        "type": "instances",
        "annotations": [
            {
                "area": bw * bh,
                "iscrowd": 0,
                "bbox": [x0, y0, bw, bh],
                "category_id": 1,
                "ignore": 0,
                "segmentation": [],
                "id": 1,
                "image_id": 1,
            }
        ],
        "categories": [{"supercategory": "pill", "id": 1, "name": code}],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1)


def make_aihub_fixture(
    root: str | Path,
    *,
    n_classes: int = 4,
    singles_per_class: int = 6,
    n_combos: int = 4,
    seed: int = 0,
    size: tuple[int, int] = (96, 128),
) -> Path:
    """Write an AIHub-layout dataset under ``root`` and return ``root``.

    Produces ``n_classes * singles_per_class`` single photos and ``n_combos`` combo photos
    (2-4 pills each, two photos per combination folder, one JSON per pill), all usable, plus
    two planted defects: a corrupt PNG (with its JSON) in the first class folder and an
    orphan JSON in the second. Classes are :func:`fixture_class` ``0..n_classes-1``.
    """
    if n_classes < 1 or singles_per_class < 0 or n_combos < 0:
        raise ValueError("n_classes must be >= 1 and the photo counts >= 0")
    if n_combos and n_classes < 2:
        raise ValueError("combination photos need at least 2 classes")
    fixture_class(n_classes - 1)  # validates the class count
    base = Path(root)
    rng = np.random.default_rng(seed)
    ts_single, tl_single = base / "TS_1_single", base / "TL_1_single"
    ts_combo, tl_combo = base / "TS_1_combo", base / "TL_1_combo"

    for cls in range(n_classes):
        code = fixture_class(cls)[0]
        img_dir, json_dir = ts_single / code, tl_single / f"{code}_json"
        img_dir.mkdir(parents=True, exist_ok=True)
        json_dir.mkdir(parents=True, exist_ok=True)
        for j in range(singles_per_class):
            stem = f"{code}_0_{j % 2}_0_{j // 2}_{60 + 10 * (j % 3)}_000_200"
            box = _place_single(rng, cls, size)
            _render(rng, size, [(cls, box)]).save(img_dir / f"{stem}.png")
            (json_dir / f"{stem}.json").write_text(
                _aihub_json(f"{stem}.png", size, cls, box), encoding="utf-8"
            )

    combo_id = ""
    combo_classes: list[int] = []
    for j in range(n_combos):
        if j % 2 == 0:  # a new combination every two photos, as AIHub shoots several angles
            k = int(rng.integers(2, min(4, n_classes) + 1))
            combo_classes = sorted(int(c) for c in rng.choice(n_classes, size=k, replace=False))
            combo_id = "K-" + "-".join(fixture_class(c)[0][2:] for c in combo_classes)
        stem = f"{combo_id}_0_2_0_2_{70 + j}_000_200"
        pills = _place_grid(rng, combo_classes, size)
        img_dir = ts_combo / combo_id
        img_dir.mkdir(parents=True, exist_ok=True)
        _render(rng, size, pills).save(img_dir / f"{stem}.png")
        for cls, box in pills:
            json_dir = tl_combo / f"{combo_id}_json" / fixture_class(cls)[0]
            json_dir.mkdir(parents=True, exist_ok=True)
            (json_dir / f"{stem}.json").write_text(
                _aihub_json(f"{stem}.png", size, cls, box), encoding="utf-8"
            )

    # Planted defects: the reader must report these and carry on.
    code0 = fixture_class(0)[0]
    bad = f"{code0}_9_9_9_9_99_000_200"
    (ts_single / code0).mkdir(parents=True, exist_ok=True)
    (tl_single / f"{code0}_json").mkdir(parents=True, exist_ok=True)
    (ts_single / code0 / f"{bad}.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    (tl_single / f"{code0}_json" / f"{bad}.json").write_text(
        _aihub_json(f"{bad}.png", size, 0, (10, 10, 40, 40)), encoding="utf-8"
    )
    code1 = fixture_class(min(1, n_classes - 1))[0]
    orphan_dir = tl_single / f"{code1}_json"
    orphan_dir.mkdir(parents=True, exist_ok=True)
    orphan = f"{code1}_8_8_8_8_88_000_200"
    (orphan_dir / f"{orphan}.json").write_text(
        _aihub_json(f"{orphan}.png", size, min(1, n_classes - 1), (10, 10, 40, 40)),
        encoding="utf-8",
    )
    return base


# --------------------------------------------------------------------------- YOLO


def _yolo_lines(
    pills: list[tuple[int, tuple[int, int, int, int]]], size: tuple[int, int]
) -> list[str]:
    """Label lines of pills whose boxes are inclusive pixel indices (as PIL draws them)."""
    width, height = size
    return [format_line(cls, inclusive_to_edges(box), width, height) for cls, box in pills]


def _flip(
    pills: list[tuple[int, tuple[int, int, int, int]]], width: int
) -> list[tuple[int, tuple[int, int, int, int]]]:
    return [(c, (width - 1 - x1, y0, width - 1 - x0, y1)) for c, (x0, y0, x1, y1) in pills]


def make_yolo_fixture(
    root: str | Path,
    *,
    n_classes: int = 3,
    photos_per_class: int = 3,
    n_combos: int = 2,
    copies: int = 3,
    layout: Literal["flat", "splits"] = "flat",
    names_as: Literal["list", "dict"] = "dict",
    seed: int = 0,
    size: tuple[int, int] = (96, 128),
) -> Path:
    """Write a Roboflow-style YOLO dataset under ``root`` and return ``root``.

    Each of the ``n_classes * photos_per_class`` single and ``n_combos`` combo photos is
    saved ``copies`` times as ``photo-NNN_jpeg.rf.<hash>.jpg`` (copy 0 as shot, later ones
    mirrored and re-lit, labels adjusted), so readers must group copies by photo. Usable
    images: ``(n_classes * photos_per_class + n_combos) * copies + 1`` (``plain_photo.jpg``,
    a non-Roboflow name). Planted defects: a truncated JPEG with a label (corrupt_image),
    ``labels/ghost.txt`` (label_without_image), ``unlabelled.jpg`` (image_without_label),
    and in ``plain_photo.txt`` one malformed line and one out-of-range class line.
    ``layout="splits"`` uses ``train/``, ``valid/`` folders and puts copy 0 of every
    fourth photo in ``valid/`` (Roboflow-style leakage a group-aware split must undo).
    """
    if n_classes < 1 or photos_per_class < 0 or n_combos < 0 or copies < 1:
        raise ValueError("n_classes and copies must be >= 1, photo counts >= 0")
    if n_combos and n_classes < 2:
        raise ValueError("combination photos need at least 2 classes")
    fixture_class(n_classes - 1)
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width = size[0]
    names = [f"{fixture_class(i)[1]}-{fixture_class(i)[2]}" for i in range(n_classes)]
    cfg: dict[str, object] = {
        "path": ".",
        "train": "train/images" if layout == "splits" else "images",
        "val": "valid/images" if layout == "splits" else "images",
        "nc": n_classes,
        "names": names if names_as == "list" else dict(enumerate(names)),
    }
    (base / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")

    def folder(split: str) -> tuple[Path, Path]:
        top = base / split if layout == "splits" else base
        (top / "images").mkdir(parents=True, exist_ok=True)
        (top / "labels").mkdir(parents=True, exist_ok=True)
        return top / "images", top / "labels"

    photos: list[list[tuple[int, tuple[int, int, int, int]]]] = []
    for cls in range(n_classes):
        photos.extend([(cls, _place_single(rng, cls, size))] for _ in range(photos_per_class))
    for _ in range(n_combos):
        k = int(rng.integers(2, min(4, n_classes) + 1))
        classes = sorted(int(c) for c in rng.choice(n_classes, size=k, replace=False))
        photos.append(_place_grid(rng, classes, size))

    for p, pills in enumerate(photos):
        img = _render(rng, size, pills)
        for copy in range(copies):
            digest = hashlib.md5(f"{seed}-{p}-{copy}".encode()).hexdigest()
            stem = f"photo-{p:03d}_jpeg.rf.{digest}"
            shown, labels = img, pills
            if copy > 0:
                shown = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                arr = np.asarray(shown).astype(np.int16) + int(rng.integers(-20, 21))
                shown = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
                labels = _flip(pills, width)
            split = "valid" if (layout == "splits" and copy == 0 and p % 4 == 3) else "train"
            img_dir, lbl_dir = folder(split)
            shown.save(img_dir / f"{stem}.jpg", quality=92)
            write_label_file(lbl_dir / f"{stem}.txt", _yolo_lines(labels, size))

    img_dir, lbl_dir = folder("train")
    pill = [(0, _place_single(rng, 0, size))]
    _render(rng, size, pill).save(img_dir / "plain_photo.jpg", quality=92)
    lines = [*_yolo_lines(pill, size), "0 0.5 0.5", f"{n_classes} 0.5 0.5 0.2 0.2"]
    write_label_file(lbl_dir / "plain_photo.txt", lines)

    buf_path = img_dir / "broken_jpeg.rf.0123456789abcdef.jpg"
    _render(rng, size, pill).save(buf_path, quality=92)
    data = buf_path.read_bytes()
    buf_path.write_bytes(data[: len(data) // 2])  # truncated: valid header, no pixels
    (lbl_dir / "broken_jpeg.rf.0123456789abcdef.txt").write_text(_yolo_lines(pill, size)[0])
    (lbl_dir / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    _render(rng, size, pill).save(img_dir / "unlabelled.jpg", quality=92)
    return base
