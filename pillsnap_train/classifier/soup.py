"""A uniform weight soup: several fine-tunings of one backbone, their weights averaged.

Why: fine-tunings from one pretrained start stay in one basin of the loss, so their
average is a working network that often ranks its own mistakes better than either run
(Wortsman et al. 2022, "Model soups"). Measured here (docs/accuracy-2.0.md): a soup of r23
and the 2.2.0 candidate beat both on top-1 and on pills named at the 0.5 % wrong-name
rule; the 2.2.0 bundle's soup named fewer pills than its better ingredient but fewer
wrongly (1 vs 2 of 246), and its int8 variant passed the gate where that ingredient's did
not. It costs one training per ingredient and nothing at inference: the soup is one
network of the same shape, exported like any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .data import ClassifierSample, ImageCache
from .train import (
    ClassifierConfig,
    TrainResult,
    evaluate,
    load_trained,
    train_classifier,
    val_loader,
)

__all__ = ["average_state_dicts", "ingredient_configs", "train_soup"]


def ingredient_configs(cfg: ClassifierConfig) -> list[ClassifierConfig]:
    """One training config per ``cfg.soup`` entry: ``cfg`` with that entry's overrides."""
    return [cfg.model_copy(update={**ing.model_dump(exclude_none=True), "soup": []})
            for ing in cfg.soup]  # fmt: skip


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors (weights, BN statistics); integer
    buffers (BatchNorm's ``num_batches_tracked``) are counters, not weights: the first's.

    Raises ValueError when the networks differ in keys or shapes: a soup of different
    architectures has no meaning.
    """
    if not states:
        raise ValueError("a soup needs at least one ingredient")
    keys = list(states[0])
    for k, st in enumerate(states[1:], start=2):
        if list(st) != keys:
            raise ValueError(f"soup ingredient {k} has other parameters than ingredient 1")
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        first = states[0][key]
        if any(st[key].shape != first.shape for st in states):
            raise ValueError(f"soup ingredients disagree on the shape of {key!r}")
        if first.is_floating_point():
            out[key] = torch.stack([st[key].float() for st in states]).mean(0).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def train_soup(
    train: Sequence[ClassifierSample],
    val: Sequence[ClassifierSample],
    num_classes: int,
    out_dir: Path,
    cfg: ClassifierConfig,
    *,
    progress: bool = True,
) -> TrainResult:
    """Train every ingredient of ``cfg.soup`` (each resumable in ``ingredient-<k>/``),
    average their best checkpoints into ``out_dir/best.pt`` and validate the average.

    The soup's ``best.pt`` has the same format as a single training's, so export and
    calibration do not know the difference; ``soup.json`` records each ingredient's
    config and validation top-1 beside the soup's.
    """
    configs = ingredient_configs(cfg)
    if not configs:
        raise ValueError("classifier.soup is empty: train a single classifier instead")
    runs = [
        train_classifier(train, val, num_classes, out_dir / f"ingredient-{k}", c,
                         progress=progress)
        for k, c in enumerate(configs)
    ]  # fmt: skip
    models = [load_trained(r.best_checkpoint)[0] for r in runs]
    soup = average_state_dicts([m.state_dict() for m in models])
    model = models[0]
    model.load_state_dict(soup)
    metrics = evaluate(model, val_loader(val, cfg, ImageCache()))  # empty val: zeros
    best = out_dir / "best.pt"
    torch.save(
        {
            "model": soup,
            "num_classes": num_classes,
            "config": configs[0].model_dump(),
            "epoch": max(int(r.history[-1]["epoch"]) if r.history else 0 for r in runs),
        },
        best,
    )
    history = [{"ingredient": float(k), **row} for k, r in enumerate(runs) for row in r.history]
    record: dict[str, Any] = {
        "soup_val_top1": metrics["top1"],
        "soup_val_top5": metrics["top5"],
        "ingredients": [
            {"config": c.model_dump(), "best_val_top1": r.best_top1, "best": str(r.best_checkpoint)}
            for c, r in zip(configs, runs, strict=True)
        ],
    }
    (out_dir / "soup.json").write_text(json.dumps(record, indent=2))
    return TrainResult(best, runs[-1].last_checkpoint, metrics["top1"], history)
