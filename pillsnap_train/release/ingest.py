"""Step ``ingest``: the configured sources -> ``data/records.csv`` (+ detector extras)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import ReleaseData
from .results import IngestResult

__all__ = ["ingest"]


def ingest(data: ReleaseData) -> IngestResult:
    """Read every source, split by photo, write the records; ``data.detector_sources``
    (photos with boxes but no usable classes) go to ``detector_extra.csv``."""
    from ..data.ingest import SourceSpec
    from ..data.ingest import ingest as run_ingest

    d, seed = data.cfg.data, data.cfg.seed
    extra: dict[str, Any] | None = None
    if d.detector_sources:
        res_x = run_ingest(
            [
                SourceSpec(kind=s.kind, path=Path(s.path), name=s.name or Path(s.path).name)
                for s in d.detector_sources
            ],
            data.detector_extra_csv,
            val_fraction=d.val_fraction,
            seed=seed,
        )
        data.forget()
        extra = {
            "records": str(data.detector_extra_csv),
            "images": res_x.report.images,
            "boxes": res_x.report.boxes,
            "dataset_sha256": res_x.report.dataset_sha256,
        }
    specs = [
        SourceSpec(kind=s.kind, path=Path(s.path), name=s.name or Path(s.path).name)
        for s in d.sources
    ]
    res = run_ingest(
        specs,
        data.records_csv,
        val_fraction=d.val_fraction,
        seed=seed,
        holdout_classes=d.holdout_classes,
        max_classes=d.max_classes,
        max_samples=d.max_samples,
        single_combo_ratio=d.single_combo_ratio,
    )
    data.forget()
    rep = res.report
    skipped = sum(sum(r.skipped_counts.values()) for r in rep.readers)
    subset = rep.subset.model_dump(mode="json") if rep.subset else None
    return IngestResult(
        records=str(data.records_csv),
        report_file=str(res.report_path),
        images=rep.images,
        boxes=rep.boxes,
        skipped=skipped,
        skipped_counts=[r.skipped_counts for r in rep.readers],
        subset=subset,
        dataset_sha256=rep.dataset_sha256,
        detector_extra=extra,
    )
