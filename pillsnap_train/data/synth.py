"""Multi-pill scene synthesis: cut pills out of single-pill photos and paste them on new tables.

Why: the detector trained on the real photos (one pill on a palm, a few busy tables) scores
AP@0.5 0.93 on photos of the same set-up but 0.29 on another camera on a plain light table.
It has learnt the set-up, not the pill. Synthetic scenes break that shortcut: the same pills
(GrabCut cut-outs from their real photos) appear in many numbers, sizes and orientations on
procedurally varied backgrounds (plain light/dark tables, gradients, paper, wood, cloth,
speckled stone), under varied lighting, blur, noise and JPEG artefacts. Boxes are exact (the
tight box of each pasted alpha mask), so the scenes carry no label noise of their own.

Deliberately torch-free (numpy, OpenCV, pydantic): it runs in data-prep processes and tests
without importing the training stack. Everything random is drawn from a caller-supplied
:class:`numpy.random.Generator`, so a seed fixes a scene bit for bit.

This module writes scenes as a YOLO folder (:func:`write_synthetic_yolo`) and is the one
import for the whole API. The parts: :mod:`.synth_config` (:class:`SynthConfig`,
:func:`pile_config`), :mod:`.cutouts` (:class:`Cutout`, :func:`extract_cutouts`,
:func:`segment_pill`), :mod:`.backgrounds` (:func:`extract_backgrounds`), :mod:`.scenes`
(:class:`Scene`, :func:`synthesize_scene`) and :mod:`.photometric` (the camera shift).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

from .backgrounds import extract_backgrounds
from .cutouts import BoxLike, Cutout, ImageInput, SourceItem, extract_cutouts, segment_pill
from .scenes import Scene, synthesize_scene
from .synth_config import BACKGROUND_KINDS, SynthConfig, pile_config
from .yolo_format import format_line, write_label_file

__all__ = [
    "BACKGROUND_KINDS",
    "BoxLike",
    "Cutout",
    "ImageInput",
    "Scene",
    "SourceItem",
    "SynthConfig",
    "extract_backgrounds",
    "extract_cutouts",
    "pile_config",
    "segment_pill",
    "synthesize_scene",
    "write_synthetic_yolo",
]

U8: TypeAlias = NDArray[np.uint8]


def write_synthetic_yolo(
    out_dir: str | os.PathLike[str],
    cutouts: Sequence[Cutout],
    n_scenes: int,
    cfg: SynthConfig | None = None,
    seed: int = 0,
    *,
    backgrounds: Sequence[U8] | None = None,
    class_mode: Literal["pill", "source"] = "pill",
    prefix: str = "synth",
    jpeg_quality: int = 95,
) -> Path:
    """Write ``n_scenes`` scenes as a YOLO folder; returns ``out_dir``.

    Layout: ``out_dir/images/<prefix>_<i>.jpg``, ``out_dir/labels/<prefix>_<i>.txt`` (lines
    ``class cx cy w h`` normalised; class 0 "pill" for ``class_mode="pill"``, the source
    class id for ``"source"``) and ``out_dir/<prefix>_scenes.jsonl`` (one record per scene
    with pixel boxes and source class ids, for the classifier). Existing files are kept, so
    scenes can be added to a folder of real images. Scene ``i`` uses the generator seeded with
    ``(seed, i)``: independent of ``n_scenes`` and of the other scenes.
    """
    cfg = cfg or SynthConfig()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    records: list[str] = []
    for i in range(n_scenes):
        rng = np.random.default_rng([seed, i])
        scene = synthesize_scene(cutouts, rng, cfg, backgrounds=backgrounds)
        h, w = scene.image.shape[:2]
        name = f"{prefix}_{i:06d}"
        ok = cv2.imwrite(
            os.fspath(out / "images" / f"{name}.jpg"),
            cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality],
        )
        if not ok:
            raise OSError(f"could not write {out / 'images' / name}.jpg")
        lines = []
        for box, cid in zip(scene.boxes.tolist(), scene.class_ids.tolist(), strict=True):
            if class_mode == "source" and cid < 0:
                raise ValueError("class_mode='source' needs cut-outs with class ids")
            lines.append(format_line(0 if class_mode == "pill" else int(cid), box, w, h))
        write_label_file(out / "labels" / f"{name}.txt", lines)
        records.append(
            json.dumps(
                {
                    "image": f"images/{name}.jpg",
                    "width": w,
                    "height": h,
                    "boxes": [[round(v, 2) for v in b] for b in scene.boxes.tolist()],
                    "class_ids": scene.class_ids.tolist(),
                    "background": scene.background,
                }
            )
        )
    with (out / f"{prefix}_scenes.jsonl").open("w", encoding="utf-8") as fh:
        fh.write("\n".join(records) + ("\n" if records else ""))
    return out
