"""Classifier samples -> tensors through the SDK's shared preprocessing."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pillsnap_sdk.image import load_image
from pillsnap_sdk.preprocessing import PreprocessSpec, crop_with_margin, preprocess

from ..torch_compat import ensure_torchvision
from .augment import augment_crop

ensure_torchvision()

import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

__all__ = ["ClassifierSample", "ImageCache", "SampleDataset", "eval_tensor"]


@dataclass(frozen=True)
class ClassifierSample:
    """One training example: a labelled box in a photo, or the whole photo (box None)."""

    image_path: str
    box: tuple[float, float, float, float] | None
    label: int


class ImageCache:
    """Decoded photos kept in memory: the datasets here are small and decoding dominates."""

    def __init__(self) -> None:
        self._images: dict[str, npt.NDArray[np.uint8]] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> npt.NDArray[np.uint8]:
        img = self._images.get(path)
        if img is None:
            img = load_image(path)
            with self._lock:
                self._images[path] = img
        return img


def eval_tensor(
    cache: ImageCache, sample: ClassifierSample, spec: PreprocessSpec, margin: float
) -> npt.NDArray[np.float32]:
    """The exact tensor the SDK builds for this crop at serving time (golden-tested)."""
    rgb = cache.get(sample.image_path)
    crop = rgb if sample.box is None else crop_with_margin(rgb, sample.box, margin)
    return preprocess(crop, spec)[0]


class SampleDataset(Dataset[tuple[torch.Tensor, int]]):
    def __init__(
        self,
        samples: Sequence[ClassifierSample],
        spec: PreprocessSpec,
        margin: float,
        *,
        train: bool,
        seed: int = 0,
        cache: ImageCache | None = None,
        aug_strength: float = 1.0,
        scale_aug: float = 0.0,
        scale_range: tuple[float, float] = (0.3, 3.0),
    ) -> None:
        self.samples = list(samples)
        self.spec = spec
        self.margin = margin
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.cache = cache or ImageCache()
        self.aug_strength = aug_strength
        self.scale_aug = scale_aug
        self.scale_range = scale_range

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        if not self.train:
            return torch.from_numpy(eval_tensor(self.cache, s, self.spec, self.margin)), s.label
        rng = np.random.default_rng((self.seed, self.epoch, i))
        crop = augment_crop(
            self.cache.get(s.image_path),
            s.box,
            self.margin,
            rng,
            strength=self.aug_strength,
            scale_prob=self.scale_aug,
            scale_range=self.scale_range,
        )
        return torch.from_numpy(preprocess(crop, self.spec)[0]), s.label
