"""Other ways to run the same weights, timed against the SDK: "is the SDK the fast way?".

Peers: (a) Ultralytics ``YOLO(detector.onnx).predict`` for the detector, (b) timm/torch
eager for the classifier (the training pipeline's ``classifier.pt``), and (c) the seed
project's serving style (:class:`~.seed_style.SeedStylePeer`) on the same ONNX models.
torch, timm and ultralytics are imported lazily, by name, and only here: the SDK never
imports them, and a peer whose package or weights are missing is reported "not run".
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pillsnap_sdk.bench.scenes import Scene, crops_for
from pillsnap_sdk.bench.timing import Stat, measure_interleaved, paired_ratio
from pillsnap_sdk.bundle.loader import Bundle
from pillsnap_sdk.bundle.manifest import BundleManifest
from pillsnap_sdk.errors import BundleError
from pillsnap_sdk.image import load_image
from pillsnap_sdk.pipeline import Identifier

from .seed_style import SeedStylePeer

__all__ = [
    "GOAL_VS_PEERS",
    "PeerResult",
    "import_torch_stack",
    "load_timm_classifier",
    "measure_peers",
    "model_file",
    "yolo_predict_kwargs",
]

#: Issue goal (reported, not gated): our detector+classifier time / (Ultralytics + timm).
GOAL_VS_PEERS = 0.30


@dataclass
class PeerResult:
    """Our time / a peer's time for the same work on the same photo (interleaved)."""

    peer: str
    scene: str
    scope: str
    status: Literal["run", "not run"]
    reason: str = ""
    ours: Stat | None = None
    theirs: Stat | None = None
    ratio: float | None = None


def import_torch_stack() -> None:
    """Make timm/ultralytics importable on the CPU torch build (see pillsnap_train).

    Imported by name: mypy of the SDK must not follow into torch-typed modules. Without
    pillsnap_train or torch this does nothing; the peer's own import then fails.
    """
    try:
        compat = importlib.import_module("pillsnap_train.torch_compat")
    except ImportError:
        return
    compat.ensure_torchvision()


@contextmanager
def model_file(bundle: Bundle, name: str) -> Iterator[Path]:
    """A path to a bundle model (directory bundles directly; zips via a temporary copy).

    Peers load models from files, while the SDK reads them from the bundle in memory.
    """
    if bundle.source.is_dir():
        yield bundle.source / name
        return
    with tempfile.TemporaryDirectory(prefix="pillsnap-bench-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(bundle.model_bytes(name))
        yield path


def yolo_predict_kwargs(manifest: BundleManifest) -> dict[str, Any]:
    """``YOLO.predict`` options that make Ultralytics do the SDK's detector work."""
    if manifest.detector is None:
        raise BundleError("bundle has no detector")
    th = manifest.thresholds
    return {
        "imgsz": list(manifest.detector.preprocessing.size),
        "conf": th.detector_confidence,
        "iou": th.nms_iou,
        "max_det": th.max_detections,
        "verbose": False,
        "device": "cpu",
    }


def _find_state_dict(bundle: Bundle) -> Path | None:
    """Where the training pipeline keeps the classifier's torch weights, if anywhere."""
    env = os.environ.get("PILLSNAP_CLASSIFIER_PT")
    src = bundle.source
    for cand in (
        Path(env) if env else None,
        src.parent / "classifier.pt",
        src.parent / f"{src.stem}.classifier.pt",
        src / ".." / f"{src.name}.classifier.pt",
    ):
        if cand is not None and cand.is_file():
            return cand
    return None


def _classifier_arch(manifest: BundleManifest) -> str:
    cfg = manifest.provenance.training_config
    for key in ("classifier_arch", "arch", "model_name"):
        if isinstance(cfg.get(key), str):
            return str(cfg[key])
    sub = cfg.get("classifier")
    if isinstance(sub, dict):
        for key in ("arch", "model", "model_name", "name"):
            if isinstance(sub.get(key), str):
                return str(sub[key])
    return "tf_efficientnet_lite0"


def load_timm_classifier(bundle: Bundle, num_classes: int) -> tuple[Any, Any]:
    """The bundle's classifier as a timm model in torch eager (eval mode), and timm's eval
    transform for its input size, mean and std.

    The weights are the ``classifier.pt`` the ONNX model was exported from (beside the
    bundle, or ``$PILLSNAP_CLASSIFIER_PT``), so the peer computes the same function.
    Raises ``FileNotFoundError`` without it and ``ImportError`` without torch/timm.
    """
    import_torch_stack()
    torch = importlib.import_module("torch")
    timm = importlib.import_module("timm")
    create_transform = importlib.import_module("timm.data").create_transform
    pt = _find_state_dict(bundle)
    if pt is None:
        raise FileNotFoundError("no classifier.pt beside the bundle (set PILLSNAP_CLASSIFIER_PT)")
    m = bundle.manifest
    model = timm.create_model(_classifier_arch(m), pretrained=False, num_classes=num_classes)
    state = torch.load(pt, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    model.eval()
    pp = m.classifier.preprocessing
    transform = create_transform(
        input_size=(3, *pp.size),
        interpolation="bilinear",
        mean=tuple(pp.mean),
        std=tuple(pp.std),
        crop_pct=1.0,
    )
    return model, transform


def measure_peers(
    bundle: Bundle, idf: Identifier, scene: Scene, rounds: int, *, warmup: int = 1
) -> list[PeerResult]:
    """Ultralytics (a), timm eager (b), (a)+(b) combined, and the seed style (c).

    All contenders run interleaved in the same rounds, with a short gap before each call
    so torch's and ORT's spinning worker threads do not steal from the next contender.
    """
    rgb = load_image(scene.data)
    crops = crops_for(idf, rgb, idf.identify(scene.data))
    m = idf.manifest
    results: list[PeerResult] = []
    fns: dict[str, Callable[[], object]] = {}
    reasons: dict[str, str] = {}

    stack = ExitStack()
    if m.detector is None:
        reasons["ultralytics"] = "bundle has no detector"
    else:
        try:
            import_torch_stack()
            yolo_cls = importlib.import_module("ultralytics").YOLO
            yolo = yolo_cls(
                str(stack.enter_context(model_file(bundle, m.detector.file))), task="detect"
            )
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            kw = yolo_predict_kwargs(m)
            fns["ours.detect"] = lambda: idf.detect(rgb)
            fns["ultralytics"] = lambda: yolo.predict(bgr, **kw)
        except Exception as exc:  # not installed, or cannot load the model: not run
            reasons["ultralytics"] = f"{type(exc).__name__}: {exc}"[:200]

    try:
        from PIL import Image

        model, tf = load_timm_classifier(bundle, len(idf.labels.classes))
        torch = importlib.import_module("torch")
        pil_crops = [Image.fromarray(c) for c in crops]
        ready = torch.stack([tf(c) for c in pil_crops])

        def timm_eager() -> object:
            batch = torch.stack([tf(c) for c in pil_crops])
            with torch.inference_mode():
                return model(batch).softmax(-1)

        def timm_forward() -> object:
            with torch.inference_mode():
                return model(ready)

        fns["ours.classify"] = lambda: idf.classify_probabilities(crops)
        fns["timm"] = timm_eager
        fns["timm.forward"] = timm_forward
    except Exception as exc:
        reasons["timm"] = f"{type(exc).__name__}: {exc}"[:200]

    seed = SeedStylePeer(bundle)
    fns["ours.e2e"] = lambda: idf.identify(scene.data)
    fns["seed"] = lambda: seed(scene.data)

    with stack:
        s = measure_interleaved(fns, rounds, warmup=warmup, gap_s=0.01)

    def ran(peer: str, ours: list[float], theirs: list[float], scope: str) -> PeerResult:
        return PeerResult(
            peer,
            scene.name,
            scope,
            "run",
            ours=Stat.of(ours),
            theirs=Stat.of(theirs),
            ratio=paired_ratio(ours, theirs),
        )

    def row(peer: str, ours: str, theirs: str, scope: str) -> None:
        if theirs in s:
            results.append(ran(peer, s[ours], s[theirs], scope))
        else:
            reason = reasons.get(theirs.split(".")[0], "not available")
            results.append(PeerResult(peer, scene.name, scope, "not run", reason))

    row(
        "(a) ultralytics YOLO.predict", "ours.detect", "ultralytics", "detector stage, RGB array in"
    )
    row(
        "(b) timm eager", "ours.classify", "timm", f"classify {len(crops)} crops (preprocess+model)"
    )
    if "timm.forward" in s:
        row(
            "(b') timm forward only",
            "ours.classify",
            "timm.forward",
            "torch model call on ready tensors vs our whole classify stage",
        )
    combined, combined_scope = "(a)+(b) combined", "detector + classifier stages"
    if "ultralytics" in s and "timm" in s:
        ours_sum = [a + b for a, b in zip(s["ours.detect"], s["ours.classify"], strict=True)]
        peer_sum = [a + b for a, b in zip(s["ultralytics"], s["timm"], strict=True)]
        results.append(ran(combined, ours_sum, peer_sum, combined_scope))
    else:
        results.append(
            PeerResult(combined, scene.name, combined_scope, "not run", "needs both (a) and (b)")
        )
    row("(c) seed-style serving", "ours.e2e", "seed", "end to end from JPEG bytes")
    return results
