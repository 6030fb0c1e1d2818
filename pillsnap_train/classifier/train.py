"""Seeded, resumable classifier training with progress bars and per-epoch checkpoints."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from pillsnap_sdk.preprocessing import Interpolation, PreprocessSpec

from ..cfgmodel import ConfigModel
from ..torch_compat import ensure_torchvision
from .data import ClassifierSample, ImageCache, SampleDataset
from .model import backbone_info, create_classifier

ensure_torchvision()

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

__all__ = [
    "ClassifierConfig",
    "SoupIngredient",
    "TrainResult",
    "classifier_spec",
    "evaluate",
    "param_groups",
    "train_classifier",
    "training_loss",
    "val_loader",
    "zero_head",
]


class SoupIngredient(ConfigModel):
    """One training of a weight soup (see :mod:`.soup`): the classifier block's settings
    with these overridden. Only what leaves the network's shape and inputs alone can
    differ, so the ingredients' weights can be averaged."""

    seed: int | None = None
    ema_warmup: bool | None = None
    epochs: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0.0)


class ClassifierConfig(ConfigModel):
    """Classifier training settings (the ``classifier:`` block of a release config)."""

    backbone: str = "tf_efficientnet_lite0"
    pretrained: bool = True
    img_size: int = 224
    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    #: Learning rate of the pretrained backbone as a fraction of ``lr`` (the new head always
    #: gets ``lr``; with ``pretrained: false`` everything trains at ``lr``). 1.0 measured
    #: best on small crops (64 px), where ImageNet features need to adapt; lower it for
    #: large, ImageNet-like crops.
    backbone_lr_mult: float = 1.0
    #: Linear warm-up length in epochs (at least one step).
    warmup_epochs: float = 1.0
    #: Start the new head at zero (uniform predictions, first loss ln C): see zero_head.
    zero_init_head: bool = True
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    crop_margin: float = 0.15
    whole_photo: bool = True
    aug_strength: float = 1.0
    #: Chance per training crop of a random rescale by 0.3x-3x before preprocessing: the
    #: same pill photographed nearer, farther or by a 12 MP camera must get the same name
    #: (1.1.0 kept 77 % of its names when a photo was upscaled to 12 MP).
    scale_aug: float = 0.5
    #: Range of that rescale (log-uniform). Below ~0.5 a 60 px crop becomes a ~20 px smudge
    #: no camera a customer uses would deliver.
    scale_range: tuple[float, float] = (0.3, 3.0)
    #: Resize filter of the classifier input (see pillsnap_sdk.preprocessing): ``area-linear``
    #: since 2.0.0; ``area`` (1.x bundles) enlarges small crops into blocky pixels.
    interpolation: Interpolation = "area-linear"
    #: Exponential moving average of the weights (0 = off). The EMA weights are the ones
    #: validated, checkpointed as best and exported: on ~1,000 crops the raw weights of one
    #: epoch swing by points of top-1, their average does not.
    ema_decay: float = 0.0
    #: Pass the optimizer step to the EMA so its warm-up runs (the 0.5.0 fix). False
    #: reproduces bundles 2.0.0-2.1.0: the full decay from the first step keeps ~48 % of the
    #: ImageNet initialisation in a 370-step run's weights, a WiSE-FT-like average with
    #: the pretrained model. Measured (docs/accuracy-2.0.md, 2.2.0 experiment): with the
    #: warm-up top-1 rose 87.8 -> 93.5 %, but under the 0.5 % wrong-name abstention rule
    #: fewer pills were named (end to end 50.0 % vs 54.5 %): its mistakes are confident.
    ema_warmup: bool = True
    #: Pill-free crops of the training photos (near pills and anywhere) per training pill
    #: crop, trained toward the uniform distribution (outlier exposure; see
    #: :mod:`.negatives`): fingertips, creases and edges the detector boxes must come out
    #: "unknown", not named. 0 = off (bundles <= 2.1.0); left out of the dump at 0.
    negatives: float = Field(default=0.0, ge=0.0, le=4.0)
    #: Weight of the negatives' loss (cross-entropy to uniform) beside the pills' (the
    #: paper's lambda).
    negative_weight: float = Field(default=0.5, gt=0.0, le=10.0)
    #: Train once per entry and ship the average of their weights (a uniform "model soup",
    #: :mod:`.soup`); empty = one training (bundles <= 2.1.0; left out of the dump).
    soup: list[SoupIngredient] = Field(default_factory=list, max_length=8)
    num_workers: int = 0
    seed: int = 0
    threads: int | None = None

    _omit_at: ClassVar[dict[str, Any]] = {"negatives": 0.0, "negative_weight": 0.5, "soup": []}


def classifier_spec(cfg: ClassifierConfig) -> PreprocessSpec:
    """The classifier's preprocessing: the single source for training, export and serving."""
    info = backbone_info(cfg.backbone)
    return PreprocessSpec(
        resize="letterbox",
        size=(cfg.img_size, cfg.img_size),
        interpolation=cfg.interpolation,
        mean=info.mean,
        std=info.std,
        pad_value=0,
    )


@dataclass
class TrainResult:
    best_checkpoint: Path
    last_checkpoint: Path
    best_top1: float
    history: list[dict[str, float]] = field(default_factory=list)


def _head(model: nn.Module) -> nn.Module | None:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    return head if isinstance(head, nn.Module) and list(head.parameters()) else None


def zero_head(model: nn.Module) -> None:
    """Zero the new classification head: uniform predictions, first loss ln(C).

    timm initialises EfficientNet heads uniform(+-1/sqrt(classes)), scaled for 1000
    classes; with 7 classes the logits of ImageNet features start with std ~3 and the first
    loss near 6 instead of ln 7 = 1.95, and the early large gradients wreck the backbone.
    """
    head = _head(model)
    if head is not None:
        with torch.no_grad():
            for p in head.parameters():
                p.zero_()


def param_groups(model: nn.Module, cfg: ClassifierConfig) -> list[dict[str, Any]]:
    """Head at ``cfg.lr``, pretrained backbone at ``cfg.lr * cfg.backbone_lr_mult``."""
    head = _head(model)
    if head is None:
        return [{"params": list(model.parameters())}]
    head_ids = {id(p) for p in head.parameters()}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    mult = cfg.backbone_lr_mult if cfg.pretrained else 1.0
    return [
        {"params": body, "lr": cfg.lr * mult},
        {"params": list(head.parameters()), "lr": cfg.lr},
    ]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def val_loader(
    val: Sequence[ClassifierSample], cfg: ClassifierConfig, cache: ImageCache
) -> DataLoader[Any]:
    """Validation crops exactly as served (no augmentation), in batches of twice the
    training batch: one definition for a training's epochs and a soup's average."""
    ds = SampleDataset(val, classifier_spec(cfg), cfg.crop_margin, train=False, cache=cache)
    return DataLoader(ds, batch_size=cfg.batch_size * 2, num_workers=cfg.num_workers)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
    """top-1 / top-5 accuracy and mean loss; logits kept for calibration elsewhere."""
    model.eval()
    n = correct1 = correct5 = 0
    loss_sum = 0.0
    for x, y in loader:
        logits = model(x.contiguous(memory_format=torch.channels_last))
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(dim=1).sum())
        n += len(y)
    return {
        "top1": correct1 / max(n, 1),
        "top5": correct5 / max(n, 1),
        "loss": loss_sum / max(n, 1),
        "n": float(n),
    }


def train_classifier(
    train: Sequence[ClassifierSample],
    val: Sequence[ClassifierSample],
    num_classes: int,
    out_dir: Path,
    cfg: ClassifierConfig,
    *,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune ``cfg.backbone`` on ``train``; keep the checkpoint with the best val top-1.

    ``out_dir/last.pt`` holds model, optimiser, scheduler and epoch: a killed run resumes
    where it stopped when called again with ``resume=True``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed_all(cfg.seed)
    spec = classifier_spec(cfg)
    cache = ImageCache()
    train_ds = SampleDataset(
        train,
        spec,
        cfg.crop_margin,
        train=True,
        seed=cfg.seed,
        cache=cache,
        aug_strength=cfg.aug_strength,
        scale_aug=cfg.scale_aug,
        scale_range=cfg.scale_range,
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=gen,
        num_workers=cfg.num_workers,
        drop_last=len(train_ds) > cfg.batch_size,
    )
    val_dl = val_loader(val, cfg, cache)

    model = create_classifier(cfg.backbone, num_classes, pretrained=cfg.pretrained)
    if cfg.zero_init_head:
        zero_head(model)
    # NHWC: PyTorch's CPU depthwise/pointwise convolutions make an EfficientNet-Lite0
    # training step 1.4-2.3x faster than NCHW (scripts/train_step_speed.py,
    # docs/accuracy-2.0.md); the weights and the exported graph are the same.
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, cfg.epochs * len(train_dl))
    warm = max(1, round(cfg.warmup_epochs * len(train_dl)))

    def lr_factor(s: int) -> float:  # linear warm-up, then cosine to zero
        return min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    ema = _make_ema(model, cfg.ema_decay)
    crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    start_epoch, best_top1, history = 0, -1.0, []
    if resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, best_top1, history = ck["epoch"] + 1, ck["best_top1"], ck["history"]
        gen.set_state(ck["generator"])
        if ema is not None and "ema" in ck:
            ema.module.load_state_dict(ck["ema"])

    for epoch in range(start_epoch, cfg.epochs):
        train_ds.epoch = epoch
        model.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(
            train_dl,
            desc=f"classifier epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for i, (x, y) in enumerate(bar):
            x = x.contiguous(memory_format=torch.channels_last)
            loss = training_loss(model(x), y, crit, cfg.negative_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            opt.step()
            sched.step()
            if ema is not None:
                update_ema(ema, model, epoch * len(train_dl) + i if cfg.ema_warmup else None)
            seen += len(y)
            loss_sum += loss.item() * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        final = model if ema is None else ema.module  # the weights that get validated/shipped
        metrics = evaluate(final, val_dl)  # empty val: zeros, as in the soup
        row = {
            "epoch": float(epoch + 1),
            "train_loss": loss_sum / max(seen, 1),
            "val_top1": metrics["top1"],
            "val_top5": metrics["top5"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if progress:
            print(
                f"classifier epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.3f} "
                f"val top1 {row['val_top1']:.3f} top5 {row['val_top5']:.3f} "
                f"({row['seconds']:.0f}s)",
                flush=True,
            )
        if metrics["top1"] > best_top1 or not best.is_file():
            best_top1 = metrics["top1"]
            torch.save(
                {
                    "model": final.state_dict(),
                    "num_classes": num_classes,
                    "config": cfg.model_dump(),
                    "epoch": epoch + 1,
                },
                best,
            )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "best_top1": best_top1,
                "history": history,
                "generator": gen.get_state(),
                **({} if ema is None else {"ema": ema.module.state_dict()}),
            },
            last,
        )
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    result = TrainResult(best, last, best_top1, history)
    (out_dir / "result.json").write_text(
        json.dumps(
            {**asdict(result), "best_checkpoint": str(best), "last_checkpoint": str(last)}, indent=2
        )
    )
    return result


def training_loss(
    logits: torch.Tensor, y: torch.Tensor, crit: nn.Module, negative_weight: float
) -> torch.Tensor:
    """Cross-entropy on pills (label >= 0) plus ``negative_weight`` times the cross-entropy
    to the uniform distribution on pill-free crops (label -1): mean -log p over classes.

    Each part is a mean over its own crops, so the balance does not drift with how many
    negatives a batch happens to draw."""
    pos = y >= 0
    loss = logits.new_zeros(())
    if bool(pos.any()):
        loss = loss + crit(logits[pos], y[pos])
    if not bool(pos.all()):
        neg = logits[~pos].log_softmax(dim=1)
        loss = loss - negative_weight * neg.mean(dim=1).mean()
    return loss


def _make_ema(model: nn.Module, decay: float) -> Any:
    """timm's ModelEmaV3 (warm-up on: early averages follow the fast-moving start), or None."""
    if decay <= 0:
        return None
    from timm.utils.model_ema import ModelEmaV3

    return ModelEmaV3(model, decay=decay, use_warmup=True)


def update_ema(ema: Any, model: nn.Module, step: int | None) -> None:
    """One EMA update at optimizer step ``step`` (0-based, counted over all epochs).

    Without the step (None) ModelEmaV3 skips its warm-up and uses the full decay from the
    first update, so after the ~370 steps of a 12-epoch run on ~1,000 crops
    ``0.998 ** 370 = 48 %`` of the shipped weights are still the ImageNet backbone and the
    zero-initialised head (bundles 2.0.0-2.1.0, ``ema_warmup: false``: logits shrunk,
    temperature 0.18).
    """
    ema.update(model, step=step)


def load_trained(checkpoint: Path) -> tuple[nn.Module, ClassifierConfig]:
    """Rebuild the model of a ``best.pt`` checkpoint (weights only, no pickled objects)."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = ClassifierConfig.model_validate(ck["config"])
    model = create_classifier(cfg.backbone, int(ck["num_classes"]), pretrained=False)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, cfg
