"""The two photos the bench times (one pill, many pills) and the bundle as seen by each.

Why two photos: the SDK's overhead over bare onnxruntime is different for one crop and for
twenty (batching, per-crop preprocessing), and the gate watches both. Real photos come
from a YOLO-layout folder when one is given (``--images`` or ``$PILLSNAP_BENCH_IMAGES``);
otherwise synthetic JPEGs stand in, so the bench runs anywhere.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from ..bundle.loader import Bundle
from ..bundle.manifest import BundleManifest
from ..pipeline import Identifier
from ..preprocessing import crop_with_margin
from ..results import IdentifyResult

__all__ = [
    "MULTI",
    "SINGLE",
    "Scene",
    "crops_for",
    "find_scenes",
    "is_synthetic",
    "scene_bundle",
    "synthetic_photo",
    "upscaled_photo",
    "with_thresholds",
]

SINGLE, MULTI = "single_pill", "multi_pill"


@dataclass(frozen=True)
class Scene:
    """One photo to time: encoded bytes (decode is part of end to end) and its pill count."""

    name: str
    source: str
    data: bytes
    expected_pills: int


def _label_count(label_file: Path) -> int:
    try:
        text = label_file.read_text(encoding="utf-8")
    except OSError:
        return -1
    return sum(1 for line in text.splitlines() if line.strip())


def _scenes_from_dir(images: Path) -> list[Scene]:
    labels = images.parent / "labels"
    single: Path | None = None
    multi: tuple[int, Path] | None = None
    for img in sorted(images.glob("*.jpg")):
        n = _label_count(labels / f"{img.stem}.txt")
        if n == 1 and single is None:
            single = img
        if n >= 20 and multi is None:
            multi = (n, img)
        if single is not None and multi is not None:
            break
    scenes: list[Scene] = []
    if single is not None:
        scenes.append(Scene(SINGLE, single.name, single.read_bytes(), 1))
    if multi is not None:
        scenes.append(Scene(MULTI, multi[1].name, multi[1].read_bytes(), multi[0]))
    return scenes


def synthetic_photo(n_pills: int, *, seed: int = 0, width: int = 480, height: int = 640) -> bytes:
    """A JPEG phone-photo stand-in: a textured table with ``n_pills`` coloured ellipses."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 150 + 40 * np.sin(xx / 37.0) * np.cos(yy / 53.0)
    img = np.clip(base[:, :, None] + rng.normal(0, 6, (height, width, 3)), 0, 255)
    bgr = np.ascontiguousarray(img.astype(np.uint8))
    cols = max(1, int(np.ceil(np.sqrt(n_pills * width / height))))
    rows = int(np.ceil(n_pills / cols))
    for i in range(n_pills):
        r, c = divmod(i, cols)
        cx = int((c + 0.5) * width / cols + rng.integers(-8, 9))
        cy = int((r + 0.5) * height / rows + rng.integers(-8, 9))
        axes = (int(rng.integers(18, 34)), int(rng.integers(12, 22)))
        colour = tuple(int(v) for v in rng.integers(30, 256, 3))
        cv2.ellipse(bgr, (cx, cy), axes, float(rng.integers(0, 180)), 0, 360, colour, -1)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("cv2 could not encode the synthetic photo")
    return bytes(buf.tobytes())


#: A 12 MP phone photo (landscape); portrait photos get it transposed.
BIG_SIZE = (4032, 3024)


def upscaled_photo(data: bytes, *, seed: int = 0, size: tuple[int, int] = BIG_SIZE) -> bytes:
    """``data`` enlarged to a 12 MP phone JPEG (Lanczos, orientation kept), quality 92.

    Mild sensor noise (sigma 2) is added first: a smooth upscale entropy-decodes faster
    than a real photo and would flatter the decoder. Deterministic for a given ``seed``.
    """
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    w, h = size if rgb.width >= rgb.height else size[::-1]
    big = np.asarray(rgb.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32)
    big += np.random.default_rng(seed).normal(0.0, 2.0, big.shape).astype(np.float32)
    out = Image.fromarray(np.clip(big + 0.5, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def find_scenes(images: Path | None = None) -> list[Scene]:
    """The single-pill and multi-pill photos to time, in that order.

    From ``images`` (or ``$PILLSNAP_BENCH_IMAGES``), a YOLO-layout ``images/`` folder with
    ``../labels/``: the first photo whose label file has one box, and the first with >= 20.
    Missing ones (or no folder) are replaced by :func:`synthetic_photo` (1 and 20 pills).
    """
    env = os.environ.get("PILLSNAP_BENCH_IMAGES")
    folder = images if images is not None else Path(env) if env else None
    found: dict[str, Scene] = {}
    if folder is not None and folder.is_dir():
        for scene in _scenes_from_dir(folder):
            found.setdefault(scene.name, scene)
    if SINGLE not in found:
        found[SINGLE] = Scene(SINGLE, "synthetic (1 pill)", synthetic_photo(1, seed=1), 1)
    if MULTI not in found:
        found[MULTI] = Scene(MULTI, "synthetic (20 pills)", synthetic_photo(20, seed=2), 20)
    return [found[SINGLE], found[MULTI]]


def is_synthetic(manifest: BundleManifest) -> bool:
    """True for bench bundles with random weights (``metrics.bench.synthetic_weights``)."""
    bench = manifest.metrics.get("bench")
    return isinstance(bench, dict) and bench.get("synthetic_weights") is True


def with_thresholds(bundle: Bundle, **update: Any) -> Bundle:
    """The same verified bundle with some thresholds replaced (in memory only)."""
    th = bundle.manifest.thresholds.model_copy(update=update)
    return dataclasses.replace(
        bundle, manifest=bundle.manifest.model_copy(update={"thresholds": th})
    )


def scene_bundle(bundle: Bundle, scene: Scene) -> Bundle:
    """For random-weight bench bundles, cap detections at the photo's pill count.

    A random detector scores anchors alike on every photo; the cap makes the SDK do what
    a trained detector makes it do (N crops, one batched classifier run). Real bundles
    are returned unchanged.
    """
    if is_synthetic(bundle.manifest) and bundle.manifest.detector is not None:
        return with_thresholds(bundle, max_detections=scene.expected_pills)
    return bundle


def crops_for(
    idf: Identifier, rgb: npt.NDArray[np.uint8], result: IdentifyResult
) -> list[npt.NDArray[np.uint8]]:
    """The crops the SDK classified for ``result`` (the whole photo when it found no box).

    Floors and peers run on exactly these, so every contender does the same model work.
    """
    boxes = [p.bbox.as_tuple() for p in result.pills if p.bbox is not None]
    if not boxes:
        return [rgb]
    margin = idf.manifest.thresholds.crop_margin
    return [crop_with_margin(rgb, box, margin) for box in boxes]
