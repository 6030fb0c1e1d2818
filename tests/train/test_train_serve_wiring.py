"""Train/serve wiring: the training evaluation dataset builds the serving tensor (<= 1e-6).

pillsnap_train's evaluation dataset calls the SDK's preprocessing (decode, crop with margin,
resize, normalise); this test fails if it stops doing so (e.g. someone adds a torchvision
transform or decodes differently). Both sides call the same ``preprocess``, so a wrong
resize, interpolation or normalisation passes here: ``tests/sdk/test_golden_preprocessing.py``
pins those against committed reference values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pillsnap_sdk.image import load_image
from pillsnap_sdk.preprocessing import crop_with_margin, preprocess
from pillsnap_train.classifier.data import ClassifierSample, ImageCache, SampleDataset
from pillsnap_train.classifier.train import ClassifierConfig, classifier_spec


def _fixtures(tmp: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w, mode) in enumerate(
        [(480, 640, "RGB"), (333, 97, "L"), (64, 64, "RGBA"), (1000, 750, "P"), (50, 400, "I;16")]
    ):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        if mode == "I;16":
            img = Image.fromarray(arr[:, :, 0].astype(np.uint16) * 257)
        elif mode != "RGB":
            img = img.convert(mode)
        p = tmp / f"f{i}.png"
        img.save(p)
        out.append(p)
    jpg = tmp / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)).save(jpg, exif=exif)
    return [*out, jpg]


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "resnet18"])
def test_train_eval_dataset_is_wired_to_serving_preprocessing(
    tmp_path: Path, backbone: str
) -> None:
    cfg = ClassifierConfig(backbone=backbone, img_size=96, pretrained=False)
    spec = classifier_spec(cfg)
    paths = _fixtures(tmp_path)
    samples = [ClassifierSample(str(p), None, 0) for p in paths]
    samples += [ClassifierSample(str(p), (5.0, 7.0, 40.0, 30.0), 0) for p in paths]
    ds = SampleDataset(samples, spec, cfg.crop_margin, train=False, cache=ImageCache())
    for i, s in enumerate(samples):
        train_t = ds[i][0].numpy()
        rgb = load_image(Path(s.image_path))  # the serving path: Identifier -> load_image
        crop = rgb if s.box is None else crop_with_margin(rgb, s.box, cfg.crop_margin)
        serve_t, _ = preprocess(crop, spec)
        assert train_t.shape == serve_t.shape
        assert float(np.abs(train_t - serve_t).max()) <= 1e-6
