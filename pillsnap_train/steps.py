"""The release steps, in order: one torch-free definition for the CLI (`--help` must not
import torch) and for :func:`pillsnap_train.release.run_release`."""

from __future__ import annotations

__all__ = ["STEPS"]

STEPS = (
    "ingest",
    "train-classifier",
    "train-detector",
    "export",
    "calibrate",
    "variants",
    "package",
)
