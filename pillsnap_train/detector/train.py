"""Train the pill detector (Ultralytics YOLO, single class) fully offline.

Why offline matters: training machines here have no network, and Ultralytics reaches for
it in several places: pretrained weights (``yolo11n.pt``) when a model name is given, the
AMP check (downloads ``yolo11n.pt`` on GPU), ``check_font`` (downloads Arial.ttf from
GitHub, called by every dataset check), pip AutoUpdate of missing requirements, and
analytics. :func:`prepare_ultralytics_offline` shuts each of those doors *before* they are
reached: the model is built from its YAML (random init, ``pretrained=False``), AMP is off
(CPU never uses it anyway), a local DejaVu font is installed under the names Ultralytics
asks for, and its ``ONLINE`` / ``AUTOINSTALL`` flags and event analytics are forced off.

Augmentation defaults lean hard on colour, lighting, scale and flips: the detector's weak
point is generalising to other cameras and tables, and pills look the same upside down.
Rotation stays small: without segments Ultralytics rotates the box corners, so large
angles teach loose boxes.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from pillsnap_sdk.batch.pool import available_cpus
from pillsnap_train.torch_compat import ensure_torchvision

__all__ = ["DEFAULT_AUGMENT", "prepare_ultralytics_offline", "train_detector"]

#: Ultralytics train args used unless overridden by ``augment``.
DEFAULT_AUGMENT: Final[Mapping[str, Any]] = {
    "hsv_h": 0.02,  # hue: pill colours matter to the classifier, not to "is it a pill"
    "hsv_s": 0.7,
    "hsv_v": 0.5,  # brightness: other lighting, other exposure
    "degrees": 10.0,
    "translate": 0.15,
    "scale": 0.6,  # 0.4x-1.6x: from 20-pill table shots to close-ups
    "shear": 0.0,
    "perspective": 0.0,
    "flipud": 0.5,
    "fliplr": 0.5,
    "mosaic": 1.0,  # 4 photos in one: more, smaller pills and background variety
    "mixup": 0.1,
    "close_mosaic": 5,  # last epochs on whole photos, as at inference
}

_FONT_NAMES: Final = ("Arial.ttf", "Arial.Unicode.ttf")


def _set_threads(threads: int | Callable[[], int] | None) -> None:
    import torch

    n = threads() if callable(threads) else threads
    torch.set_num_threads(max(1, int(n)) if n is not None else available_cpus())


def _module(name: str) -> Any:
    """Import an Ultralytics module untyped: we set flags it does not declare as public."""
    return importlib.import_module(name)


def _local_font() -> Path | None:
    """A TTF on this machine to stand in for Arial (matplotlib bundles DejaVu Sans)."""
    try:
        import matplotlib

        cand = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if cand.is_file():
            return cand
    except ImportError:  # pragma: no cover - ultralytics depends on matplotlib
        pass
    for cand in (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    ):
        if cand.is_file():
            return cand
    return None


def prepare_ultralytics_offline() -> None:
    """Make Ultralytics unable and unwilling to touch the network (idempotent).

    Sets ``YOLO_OFFLINE``/``YOLO_AUTOINSTALL`` before the first import, and forces the
    already-computed module flags too in case Ultralytics was imported earlier. Installs the
    fonts ``check_font`` looks for into Ultralytics' config dir; if no local font exists, its
    ``check_font`` is replaced by a local-only lookup (plots then use PIL's default font).
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    ensure_torchvision()
    uu = _module("ultralytics.utils")
    uc = _module("ultralytics.utils.checks")

    uu.ONLINE = False
    uc.ONLINE = False
    uu.AUTOINSTALL = False
    uc.AUTOINSTALL = False
    with contextlib.suppress(ImportError, AttributeError):  # older/newer layouts
        _module("ultralytics.utils.events").events.enabled = False

    cfg_dir = Path(uu.USER_CONFIG_DIR)
    src = _local_font()
    missing = [n for n in _FONT_NAMES if not (cfg_dir / n).is_file()]
    if src is not None:
        for name in missing:
            tmp = cfg_dir / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, cfg_dir / name)
    elif missing:  # pragma: no cover - no font anywhere on the machine

        def _check_font_local(font: str = "Arial.ttf") -> Path | None:
            file = cfg_dir / Path(font).name
            return file if file.exists() else None

        for mod in (
            "ultralytics.utils.checks",
            "ultralytics.data.utils",
            "ultralytics.utils.plotting",
        ):
            _module(mod).check_font = _check_font_local


def _checkpoint_state(path: Path) -> tuple[int, bool]:
    """(epoch, has_optimizer) of an Ultralytics checkpoint; finished runs have epoch -1."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict):
        return -1, False
    return int(ckpt.get("epoch", -1) if ckpt.get("epoch") is not None else -1), (
        ckpt.get("optimizer") is not None
    )


def train_detector(
    data_yaml: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model: str = "yolo11n.yaml",
    imgsz: int = 640,
    epochs: int = 60,
    batch: int = 16,
    seed: int = 0,
    workers: int = 2,
    resume: bool = False,
    device: str = "cpu",
    augment: Mapping[str, Any] | None = None,
    patience: int = 100,
    val: bool = True,
    plots: bool = False,
    save_period: int = -1,
    cache: bool | str = False,
    init_weights: str | os.PathLike[str] | None = None,
    lr0: float | None = None,
    threads: int | Callable[[], int] | None = None,
) -> Path:
    """Train (or resume) a detector; returns the path of ``best.pt`` (``last.pt`` if none).

    ``init_weights`` starts from a local checkpoint of an earlier stage instead of the YAML's
    random initialisation (a second, low-``lr0`` stage); it is never downloaded.

    The run lives in ``out_dir`` itself (``out_dir/weights/{last,best}.pt``, ``results.csv``,
    ``args.yaml``); ``last.pt`` is rewritten every epoch, plus ``epochN.pt`` every
    ``save_period`` epochs when positive. ``model`` must be a model YAML (e.g.
    ``yolo11n.yaml``): weights are randomly initialised, nothing is downloaded. ``augment``
    is merged over :data:`DEFAULT_AUGMENT` and may hold any Ultralytics train argument.

    ``resume=True`` continues from ``out_dir/weights/last.pt`` when it is an unfinished run
    (Ultralytics restores optimizer, EMA, LR schedule and epoch; only size/batch/device-like
    args may change), returns the existing weights when that run already finished, and
    starts fresh when there is no ``last.pt``.

    ``threads``: torch intra-op threads, set at every epoch's start (a callable is asked
    each time, so a run can take the cores a finished sibling job leaves); None: every CPU
    this process may use. Ultralytics itself pins CPU training to ``cpu_count - 1``
    threads: one of two cores idled while the detector trained alone.
    """
    prepare_ultralytics_offline()
    ultra = _module("ultralytics")

    def yolo_cls(weights: str) -> Any:
        yolo = ultra.YOLO(weights)
        yolo.add_callback("on_train_epoch_start", lambda _trainer: _set_threads(threads))
        return yolo

    if init_weights is not None and not Path(init_weights).is_file():
        raise FileNotFoundError(f"init_weights {init_weights} does not exist")
    if init_weights is None and not str(model).endswith((".yaml", ".yml")):
        raise ValueError(
            f"model={model!r}: pass a model YAML (e.g. 'yolo11n.yaml'); pretrained .pt "
            "weights would have to be downloaded"
        )
    out = Path(out_dir).resolve()
    weights = out / "weights"
    last, best = weights / "last.pt", weights / "best.pt"

    if resume and last.is_file():
        epoch, has_opt = _checkpoint_state(last)
        if epoch < 0 or not has_opt:  # stripped by Ultralytics' final_eval: run finished
            return best if best.is_file() else last
        yolo_cls(str(last)).train(
            resume=True,
            imgsz=imgsz,
            batch=batch,
            device=device,
            workers=workers,
            plots=plots,
            save_period=save_period,
            cache=cache,
        )
        return best if best.is_file() else last

    args: dict[str, Any] = {
        **DEFAULT_AUGMENT,
        **dict(augment or {}),
        "data": str(Path(data_yaml).resolve()),
        "imgsz": imgsz,
        "epochs": epochs,
        "batch": batch,
        "seed": seed,
        "deterministic": True,
        "workers": workers,
        "device": device,
        "project": str(out.parent),
        "name": out.name,
        "exist_ok": True,
        # From a YAML: random init (True would mean "download pretrained weights").
        "pretrained": init_weights is not None,
        "amp": False,
        "plots": plots,
        "val": val,
        "patience": patience,
        "save_period": save_period,
        "cache": cache,
        "single_cls": True,
        "verbose": False,
    }
    if lr0 is not None:
        args.update(lr0=lr0, warmup_epochs=1.0)
    yolo_cls(str(init_weights) if init_weights is not None else model).train(**args)
    if not last.is_file():
        raise RuntimeError(f"training finished without writing {last}")
    return best if best.is_file() else last
