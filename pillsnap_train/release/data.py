"""What the release steps read from the ingested data: records, classes, splits, photos.

Why one view: every step (training, calibration, checks, robustness) must see the same
classes in the same order and the same validation photos, so they all ask this object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import ReleaseConfig
from ..data.records import BoxRecord, ClassInfo, class_table, group_by_image, read_records
from ..evaluate import GroundTruthImage

__all__ = ["OTHER_DRUG", "ReleaseData"]

#: The class code of every pill in ``data.detector_sources`` photos when they are scored
#: (:meth:`ReleaseData.foreign_images`): none of the bundle's drugs.
OTHER_DRUG = "(other drug)"

Box = tuple[float, float, float, float]


class ReleaseData:
    """The ingested dataset of one release (``work_dir/data``), read lazily and cached."""

    def __init__(self, cfg: ReleaseConfig) -> None:
        self.cfg = cfg
        self.work = Path(cfg.work_dir)
        self._records: list[BoxRecord] | None = None
        self._extra: list[BoxRecord] | None = None

    @property
    def records_csv(self) -> Path:
        """``data/records.csv``; in a work dir ingested before the rename (which holds
        ``data/manifest.csv`` and no ``records.csv``), that older file, so it resumes."""
        path = self.work / "data" / "records.csv"
        legacy = self.work / "data" / "manifest.csv"
        return legacy if legacy.is_file() and not path.exists() else path

    @property
    def detector_extra_csv(self) -> Path:
        return self.work / "data" / "detector_extra.csv"

    def forget(self) -> None:
        """Drop the cached records (after ``ingest`` rewrote them)."""
        self._records = None
        self._extra = None

    def records(self) -> list[BoxRecord]:
        if self._records is None:
            self._records = read_records(self.records_csv)
        return self._records

    def classes(self) -> list[ClassInfo]:
        holdout = set(self.cfg.data.holdout_classes)
        return [c for c in class_table(self.records()) if c.code not in holdout]

    def split(self, name: str) -> list[BoxRecord]:
        return [r for r in self.records() if r.split == name]

    def detector_extra(self) -> list[BoxRecord]:
        """Boxes of ``data.detector_sources`` (detector only; empty when none)."""
        if not self.cfg.data.detector_sources:
            return []
        if self._extra is None:
            self._extra = read_records(self.detector_extra_csv)
        return self._extra

    def det_items(self, split: str, *, extra: bool = True) -> list[tuple[str, list[Box]]]:
        """Photos and boxes for the detector: ``sources`` plus (``extra``) detector_sources."""
        recs = self._detector_records(split) if extra else self.split(split)
        return [(p, [b.box for b in boxes]) for p, boxes in sorted(group_by_image(recs).items())]

    def _detector_records(self, split: str) -> list[BoxRecord]:
        """Every box of ``split`` the detector sees: ``sources`` plus ``detector_sources``."""
        return self.split(split) + [r for r in self.detector_extra() if r.split == split]

    def samples(self, split: str, whole: bool) -> list[Any]:
        """Classifier samples of ``split``: every known box, plus (``whole``) single-pill
        photos as a whole."""
        from ..classifier.data import ClassifierSample

        index = {c.code: i for i, c in enumerate(self.classes())}
        out = []
        for path, boxes in sorted(group_by_image(self.split(split)).items()):
            for b in boxes:
                if b.class_code in index:
                    out.append(ClassifierSample(path, b.box, index[b.class_code]))
            if whole and len(boxes) == 1 and boxes[0].class_code in index:
                out.append(ClassifierSample(path, None, index[boxes[0].class_code]))
        return out

    def negative_samples(self, split: str, count: int) -> list[Any]:
        """``count`` pill-free crops of ``split``'s photos, labelled -1 for outlier exposure
        (:mod:`..classifier.negatives`). Every labelled box counts as a pill, also those of
        held-out classes.

        Only ``sources`` (the named photos): ``detector_sources`` are licensed for the
        detector and never reach the classifier, not even their tables (pillcounter's
        README: "use them for detection, never for the classifier"). Bundles up to 2.4.0
        drew half their negatives from them; 2.5.0 does not."""
        from ..classifier.data import ClassifierSample
        from ..classifier.negatives import sample_negative_boxes

        recs = self.split(split)
        photos = [
            (path, boxes[0].image_width, boxes[0].image_height, [b.box for b in boxes])
            for path, boxes in sorted(group_by_image(recs).items())
        ]
        boxes = sample_negative_boxes(
            photos, count, seed=self.cfg.seed, margin=self.cfg.classifier.crop_margin
        )
        return [ClassifierSample(path, box, -1) for path, box in boxes]

    def gt_images(self, split: str) -> list[GroundTruthImage]:
        """Every photo of ``split`` with its boxes and class codes (needs ``ingest`` done)."""
        out = []
        for path, boxes in sorted(group_by_image(self.split(split)).items()):
            out.append(
                GroundTruthImage(
                    path,
                    np.array([b.box for b in boxes], np.float32),
                    [b.class_code for b in boxes],
                )
            )
        return out

    def foreign_images(self, split: str) -> list[GroundTruthImage]:
        """``split``'s detector-only photos (``data.detector_sources``: other drugs, other
        phones and tables) with every box coded :data:`OTHER_DRUG`, a code no bundle has:
        scored with :func:`..evaluate.score_pipeline`, each pill the bundle names there is a
        wrong name. Evaluation only: these photos never train the classifier."""
        out = []
        for path, boxes in sorted(group_by_image(self.detector_extra()).items()):
            if boxes[0].split == split:
                arr = np.array([b.box for b in boxes], np.float32)
                out.append(GroundTruthImage(path, arr, [OTHER_DRUG] * len(boxes)))
        return out

    def summary(self, ingest: dict[str, Any]) -> dict[str, Any]:
        """The report's ``data`` block: photos and boxes per split, classes, skipped files."""
        recs = self.records()
        images: dict[str, int] = {}
        boxes: dict[str, int] = {}
        for split in ("train", "val", "test", "holdout"):
            sel = [r for r in recs if r.split == split]
            if sel:
                boxes[split] = len(sel)
                images[split] = len({r.image_path for r in sel})
        skipped = ingest.get("skipped", 0)
        return {
            "images": images,
            "boxes": boxes,
            "n_classes": len(self.classes()),
            "skipped": skipped,
            "dataset_sha256": ingest.get("dataset_sha256", ""),
        }
