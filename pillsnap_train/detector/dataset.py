"""Build the single-class ("pill") Ultralytics dataset the detector trains on.

Layout written under ``out_dir``::

    train/images/*   real train photos (symlinks, or copies where links fail) + synth_*.jpg
    train/labels/*.txt
    val/images/*     real validation photos only
    val/labels/*.txt
    data.yaml        absolute paths, ``names: {0: pill}``
    dataset_info.json

Why single class: the detector only has to find pills; naming them is the classifier's job,
so every box is class 0 whatever its source class. Why synthetic scenes come from the
*train* items only: a cut-out of a validation pill pasted into training would leak that
photo into training and inflate the validation score.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import cv2
import numpy as np
import yaml

from pillsnap_train.data.photometric import photometric_jitter
from pillsnap_train.data.records import read_image_header
from pillsnap_train.data.synth import (
    SynthConfig,
    extract_backgrounds,
    extract_cutouts,
    pile_config,
    write_synthetic_yolo,
)
from pillsnap_train.data.yolo_format import clipped_lines, write_label_file

__all__ = ["DetItem", "build_detector_dataset"]

#: ``(image_path, [(x1, y1, x2, y2), ...])`` in pixels of the EXIF-upright image.
DetItem: TypeAlias = tuple[str | os.PathLike[str], Sequence[Sequence[float]]]

_SPLITS: Final = ("train", "val")


def _place_image(src: Path, dst: Path, copy: bool) -> None:
    if not copy:
        try:
            os.symlink(src, dst)
            return
        except OSError:
            pass  # e.g. filesystems without symlinks: fall back to a copy
    shutil.copy2(src, dst)


@dataclass(frozen=True)
class _Jitter:
    """Which train photos get a photometric shift, decided per photo from ``(seed, index)``."""

    fraction: float
    cfg: SynthConfig
    seed: int

    def rng(self, index: int) -> np.random.Generator | None:
        rng = np.random.default_rng([self.seed, 7919, index])
        return rng if rng.random() < self.fraction else None


def _write_jittered(src: Path, dst: Path, rng: np.random.Generator, cfg: SynthConfig) -> None:
    bgr = cv2.imread(os.fspath(src), cv2.IMREAD_COLOR)  # EXIF-upright, as the labels are
    if bgr is None:
        raise ValueError(f"cannot decode {src}")
    rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
    out = cv2.cvtColor(photometric_jitter(rgb, rng, cfg), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(os.fspath(dst), out, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"could not write {dst}")


def _write_split(
    root: Path, split: str, items: Sequence[DetItem], copy: bool, jitter: _Jitter | None = None
) -> tuple[int, int, int]:
    """Write one split; returns (images, boxes, photos written camera-shifted)."""
    img_dir, lab_dir = root / split / "images", root / split / "labels"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    n_boxes = n_shifted = 0
    for index, (path, boxes) in enumerate(items):
        src = Path(path).resolve()
        header = read_image_header(src, decode=False)
        # Unique stem: photos from different folders may share a file name.
        base = f"real_{src.stem}" if src.stem.lower().startswith("synth_") else src.stem
        stem, k = base, 1
        while stem.lower() in used:
            stem, k = f"{base}__{k}", k + 1
        used.add(stem.lower())
        rng = jitter.rng(index) if jitter is not None else None
        if rng is not None and jitter is not None:
            _write_jittered(src, img_dir / f"{stem}.jpg", rng, jitter.cfg)
            n_shifted += 1
        else:
            _place_image(src, img_dir / f"{stem}{src.suffix.lower()}", copy)
        lines = clipped_lines(boxes, header.width, header.height)
        n_boxes += len(lines)
        write_label_file(lab_dir / f"{stem}.txt", lines)
    return len(items), n_boxes, n_shifted


def build_detector_dataset(
    out_dir: str | os.PathLike[str],
    train_items: Sequence[DetItem],
    val_items: Sequence[DetItem],
    *,
    synth_scenes: int = 0,
    synth_cfg: SynthConfig | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    real_backgrounds: bool = True,
    copy: bool = False,
    photometric_fraction: float = 0.0,
    pile_scenes: int = 0,
) -> Path:
    """Write an Ultralytics detection dataset and return the path of its ``data.yaml``.

    ``synth_scenes`` multi-pill scenes (see :mod:`pillsnap_train.data.synth`) are made from
    cut-outs of the train items' boxes, on procedural backgrounds plus (``real_backgrounds``)
    the train photos with their pills covered, and added to train only. ``cache_dir`` keeps
    cut-outs between builds (default ``out_dir/synth_cache``, i.e. lost when ``out_dir`` is
    deleted). Images are symlinked unless ``copy``. Raises ``ValueError`` if the splits
    share an image, if val is empty (Ultralytics needs it) or if an existing build is in
    the way (delete ``out_dir`` first: mixing two builds would silently mix their labels).

    ``photometric_fraction`` of the real train photos (drawn per photo from ``seed``) are
    written as JPEGs shifted by :func:`~pillsnap_train.data.photometric.photometric_jitter`
    (``synth_cfg``'s ranges) instead of linked: other cameras and lamps at no extra
    training cost. Validation photos are never touched.

    ``pile_scenes`` dense-pile scenes (:func:`~pillsnap_train.data.synth.pile_config`) are
    added to train from the same cut-outs, named ``pile_*``.
    """
    if not 0.0 <= photometric_fraction <= 1.0:
        raise ValueError(f"photometric_fraction must be in [0, 1], got {photometric_fraction}")
    root = Path(out_dir).resolve()
    if not val_items:
        raise ValueError("val_items is empty: Ultralytics needs a validation split")
    train_paths = {Path(p).resolve() for p, _ in train_items}
    leaked = train_paths & {Path(p).resolve() for p, _ in val_items}
    if leaked:
        raise ValueError(f"{len(leaked)} image(s) in both train and val, e.g. {min(leaked)}")
    for split in _SPLITS:
        if (root / split).exists():
            raise ValueError(f"{root / split} exists: remove {root} before rebuilding")
    root.mkdir(parents=True, exist_ok=True)

    cfg = synth_cfg or SynthConfig()
    jitter = _Jitter(photometric_fraction, cfg, seed) if photometric_fraction > 0 else None
    n_train, b_train, n_jittered = _write_split(root, "train", train_items, copy, jitter)
    n_val, b_val, _ = _write_split(root, "val", val_items, copy)

    synth_info: dict[str, Any] = {"scenes": 0, "pile_scenes": 0}
    if synth_scenes > 0 or pile_scenes > 0:
        cache = Path(cache_dir) if cache_dir is not None else root / "synth_cache"
        cutouts = extract_cutouts(list(train_items), cache)
        if not cutouts:
            raise ValueError("synth_scenes > 0 but the train items gave no usable pill cut-outs")
        backgrounds = extract_backgrounds(list(train_items), cache) if real_backgrounds else []
        write_synthetic_yolo(
            root / "train", cutouts, synth_scenes, cfg, seed, backgrounds=backgrounds
        )
        if pile_scenes > 0:
            write_synthetic_yolo(
                root / "train",
                cutouts,
                pile_scenes,
                pile_config(cfg),
                seed + 1,
                backgrounds=backgrounds,
                prefix="pile",
            )
        synth_info = {
            "scenes": synth_scenes,
            "pile_scenes": pile_scenes,
            "cutouts": len(cutouts),
            "cutouts_ellipse_fallback": sum(c.method == "ellipse" for c in cutouts),
            "real_backgrounds": len(backgrounds),
            "seed": seed,
            "config": cfg.model_dump(mode="json"),
        }

    data_yaml = root / "data.yaml"
    data: dict[str, Any] = {
        "path": str(root),
        "train": str(root / "train" / "images"),
        "val": str(root / "val" / "images"),
        "nc": 1,
        "names": {0: "pill"},
    }
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    info = {
        "train_images": n_train,
        "train_boxes": b_train,
        "train_photometric_shifted": n_jittered,
        "val_images": n_val,
        "val_boxes": b_val,
        "synthetic": synth_info,
    }
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return data_yaml
