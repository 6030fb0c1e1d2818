"""Build the *bench bundle*: real architectures, random weights, real ONNX exports.

Why: latency depends on the architectures, the ONNX export and the SDK, not on what the
weights have learned. Until the trained default bundle lands in ``models/``, the
benchmarks need a bundle whose models cost exactly what the real ones will cost:

- detector: Ultralytics ``yolo11n`` built from ``yolo11n.yaml`` with ``nc=1`` (no download),
  exported by Ultralytics' own exporter (static ``1x3x640x640`` input ``images``, raw
  output ``[1, 5, 8400]``, Ultralytics metadata so ``YOLO(detector.onnx).predict`` works);
- classifier: timm ``tf_efficientnet_lite0`` (17 classes), exported with a dynamic batch
  (input ``input`` ``[N, 3, 224, 224]``, output ``logits``);
- variants: the classifier in fp16 (onnxconverter-common) and int8 (onnxruntime static
  QDQ quantisation calibrated on real crops when the photos are available), so the
  precision table has something to show. Their recorded metrics are *agreement with the
  fp32 model*, not accuracy: the weights are random.

Random weights score every anchor almost equally, so the manifest marks the bundle
``metrics.bench.synthetic_weights`` and lowers ``detector_confidence``; the benchmark then
caps ``max_detections`` at the photo's labelled pill count, which makes the SDK do exactly
the work a trained detector causes (one detector run, N crops, one batched classifier run).

The timm ``state_dict`` is kept *beside* the bundle (``classifier.pt``) for the torch peer.
Everything lands in a cache directory outside the repository::

    python benchmarks/make_bench_bundle.py            # prints the bundle path
    python benchmarks/make_bench_bundle.py --out DIR  # build somewhere else
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # running as a script from anywhere
    sys.path.insert(0, str(REPO))

from pillsnap_sdk.bundle.loader import load_bundle  # noqa: E402
from pillsnap_sdk.bundle.manifest import LabelEntry, LabelsFile  # noqa: E402
from pillsnap_sdk.bundle.writer import write_bundle  # noqa: E402
from pillsnap_sdk.errors import BundleError  # noqa: E402

#: Bump when the recipe changes: the cache key includes it, so old caches are ignored.
RECIPE_VERSION = 1
BUNDLE_NAME = "pillsnap-bench"
BUNDLE_VERSION = f"0.0.{RECIPE_VERSION}"
SEED = 0
DET_SIZE = 640
CLS_SIZE = 224
CLASSIFIER_ARCH = "tf_efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The 17 pushin-pill class names (the real bundle's label set has the same size).
CLASS_NAMES = [
    "acetaminophen", "advil", "advil-gel", "allerclear", "altoid", "duphaston",
    "flatugel 6", "lactrase", "mefenamic-acid", "midol", "pancrelipase", "pepto-bismol",
    "slactone", "spironolactone", "tylenol", "tylenol-er", "vitamin",
]  # fmt: skip
DEFAULT_IMAGES = Path("/work/shared/data/pushin-pill-train/images")
STATE_DICT_NAME = "classifier.pt"


def default_cache_dir() -> Path:
    """``$PILLSNAP_BENCH_CACHE`` or ``~/.cache/pillsnap/bench-v<recipe>`` (outside the repo)."""
    env = os.environ.get("PILLSNAP_BENCH_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "pillsnap"
    return root / f"bench-v{RECIPE_VERSION}"


def bench_bundle_path(cache_dir: Path | None = None, *, build: bool = True) -> Path:
    """Return the cached bench bundle, building it first if needed (and allowed)."""
    root = cache_dir or default_cache_dir()
    bundle = root / "bundle"
    if (bundle / "manifest.json").is_file():
        try:
            load_bundle(bundle)
            return bundle
        except BundleError:
            pass  # half-written or stale: rebuild below
    if not build:
        raise FileNotFoundError(f"no bench bundle at {bundle}; run benchmarks/make_bench_bundle.py")
    return build_bench_bundle(root)


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _export_detector(work: Path) -> bytes:
    """yolo11n (nc=1, random init, seed 0) through Ultralytics' ONNX exporter."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(SEED)
    with _chdir(work):
        wrapper = YOLO("yolo11n.yaml", task="detect")  # built from the packaged yaml, offline
        model = DetectionModel("yolo11n.yaml", nc=1, verbose=False)
        model.names = {0: "pill"}
        model.args = wrapper.model.args
        model.task = "detect"
        wrapper.model = model
        out = wrapper.export(
            format="onnx", imgsz=DET_SIZE, dynamic=False, simplify=True, opset=17, device="cpu"
        )
        return Path(out).read_bytes()


def _export_classifier(work: Path) -> tuple[bytes, dict[str, Any]]:
    """tf_efficientnet_lite0 (17 classes, random init, seed 0) -> ONNX with a dynamic batch."""
    import timm
    import torch

    torch.manual_seed(SEED)
    model = timm.create_model(CLASSIFIER_ARCH, pretrained=False, num_classes=len(CLASS_NAMES))
    model.eval()
    buf = io.BytesIO()
    dummy = torch.randn(2, 3, CLS_SIZE, CLS_SIZE)
    torch.onnx.export(
        model,
        (dummy,),
        buf,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    # onnxslim folds the shape arithmetic of TF "same" padding (50 Cast/Ceil nodes) that
    # the training pipeline's export also removes; fp16 conversion chokes on those Casts.
    import onnx
    import onnxslim

    slim = onnxslim.slim(onnx.load_from_string(buf.getvalue()))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return slim.SerializeToString(), state


def _calibration_crops(images: Path, limit: int = 32) -> list[npt.NDArray[np.uint8]]:
    """Crops of labelled pills (real pixels) for int8 calibration and variant agreement."""
    from pillsnap_sdk.image import load_image
    from pillsnap_sdk.preprocessing import crop_with_margin
    from pillsnap_train.data.yolo_format import parse_line

    crops: list[npt.NDArray[np.uint8]] = []
    labels = images.parent / "labels"
    for img_path in sorted(images.glob("*.jpg")):
        lab = labels / f"{img_path.stem}.txt"
        if not lab.is_file():
            continue
        rgb = load_image(img_path)
        h, w = rgb.shape[:2]
        for line in lab.read_text().splitlines()[:4]:
            parts = line.split()
            parsed = parse_line(parts) if len(parts) == 5 else "polygon"
            if isinstance(parsed, str):
                continue
            nx1, ny1, nx2, ny2 = parsed[1]
            crops.append(crop_with_margin(rgb, (nx1 * w, ny1 * h, nx2 * w, ny2 * h), 0.1))
        if len(crops) >= limit:
            break
    if not crops:  # no photos: random but fixed pixels
        rng = np.random.default_rng(SEED)
        crops = [rng.integers(0, 256, (96, 80, 3), dtype=np.uint8) for _ in range(limit)]
    return crops[:limit]


def _variants(
    cls_bytes: bytes, crops: list[npt.NDArray[np.uint8]], spec: dict[str, Any], work: Path
) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """fp16 and int8 classifier variants with their agreement against fp32 as metrics."""
    import onnx
    import onnxruntime as ort
    from onnxconverter_common import float16
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from pillsnap_sdk.preprocessing import PreprocessSpec, preprocess_batch

    pp = PreprocessSpec.model_validate(spec["preprocessing"])
    batch, _ = preprocess_batch(crops, pp)

    with warnings.catch_warnings():  # "float32 number ... will be truncated" per weight
        warnings.simplefilter("ignore", UserWarning)
        fp16 = float16.convert_float_to_float16(
            onnx.load_from_string(cls_bytes), keep_io_types=True
        )
    fp16_bytes = fp16.SerializeToString()

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter([{"input": batch[i : i + 1]} for i in range(batch.shape[0])])

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            return next(self._it, None)

    src, pre, dst = work / "cls.onnx", work / "cls.pre.onnx", work / "cls.int8.onnx"
    src.write_bytes(cls_bytes)
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(dst),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    int8_bytes = dst.read_bytes()

    def probs(model: bytes) -> npt.NDArray[np.float32]:
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        logits = np.asarray(sess.run(None, {"input": batch})[0], dtype=np.float32)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(z / z.sum(axis=1, keepdims=True), dtype=np.float32)

    ref = probs(cls_bytes)
    models: dict[str, bytes] = {}
    variants: list[dict[str, Any]] = []
    for precision, data in (("fp16", fp16_bytes), ("int8", int8_bytes)):
        p = probs(data)
        fname = f"classifier.{precision}.onnx"
        models[fname] = data
        variants.append(
            {
                "role": "classifier",
                "file": fname,
                "precision": precision,
                "metrics": {
                    "top1_agreement_vs_fp32": float((p.argmax(1) == ref.argmax(1)).mean()),
                    "prob_max_abs_diff_vs_fp32": float(np.abs(p - ref).max()),
                    "calibration_crops": float(len(crops)),
                },
            }
        )
    return models, variants


def build_bench_bundle(
    out_root: Path, *, images: Path = DEFAULT_IMAGES, variants: bool = True
) -> Path:
    """Write ``out_root/bundle`` (verified) and ``out_root/classifier.pt``; return the bundle."""
    from pillsnap_train.torch_compat import ensure_torchvision

    ensure_torchvision()
    import torch

    out_root.mkdir(parents=True, exist_ok=True)
    bundle_dir = out_root / "bundle"
    with tempfile.TemporaryDirectory(prefix="pillsnap-bench-") as tmp:
        work = Path(tmp)
        det_bytes = _export_detector(work)
        cls_bytes, state = _export_classifier(work)
        cls_spec: dict[str, Any] = {
            "file": "classifier.onnx",
            "precision": "fp32",
            "input_name": "input",
            "input_shape": ["N", 3, CLS_SIZE, CLS_SIZE],
            "preprocessing": {
                "resize": "letterbox",
                "size": [CLS_SIZE, CLS_SIZE],
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
                "pad_value": 114,
            },
            "output_format": "logits",
        }
        det_spec: dict[str, Any] = {
            "file": "detector.onnx",
            "precision": "fp32",
            "input_name": "images",
            "input_shape": [1, 3, DET_SIZE, DET_SIZE],
            "preprocessing": {
                "resize": "letterbox",
                "size": [DET_SIZE, DET_SIZE],
                "pad_value": 114,
                "mean": [0, 0, 0],
                "std": [1, 1, 1],
            },
            "output_format": "yolo_cxcywh",
        }
        models = {"classifier.onnx": cls_bytes, "detector.onnx": det_bytes}
        variant_specs: list[dict[str, Any]] = []
        if variants:
            crops = _calibration_crops(images)
            extra_models, variant_specs = _variants(cls_bytes, crops, cls_spec, work)
            models.update(extra_models)
        tmp_bundle = out_root / "bundle.tmp"
        if tmp_bundle.exists():
            import shutil

            shutil.rmtree(tmp_bundle)
        write_bundle(
            tmp_bundle,
            name=BUNDLE_NAME,
            version=BUNDLE_VERSION,
            classifier=cls_spec,
            detector=det_spec,
            variants=variant_specs,
            models=models,
            labels=LabelsFile(
                classes=[
                    LabelEntry(index=i, code=f"PP-{i:02d}", name=n)
                    for i, n in enumerate(CLASS_NAMES)
                ]
            ),
            model_card=(
                f"# {BUNDLE_NAME} {BUNDLE_VERSION}\n\nRandom weights (seed {SEED}); for latency "
                "benchmarks only. Built by benchmarks/make_bench_bundle.py.\n"
            ),
            extra={
                "thresholds": {
                    # Random yolo11n scores every stride-32 anchor ~0.012 and the rest lower:
                    # 0.01 keeps 400 candidates, like a trained detector on a busy photo.
                    "detector_confidence": 0.01,
                    "nms_iou": 0.7,
                    "max_detections": 100,
                    "crop_margin": 0.1,
                },
                "metrics": {
                    "bench": {
                        "synthetic_weights": True,
                        "note": "random weights: cap max_detections per photo when timing",
                    }
                },
                "provenance": {
                    "trained_on": "not trained (random init)",
                    "code_version": f"benchmarks/make_bench_bundle.py recipe {RECIPE_VERSION}",
                    "training_config": {"classifier_arch": CLASSIFIER_ARCH, "seed": SEED},
                },
            },
        )
        if bundle_dir.exists():
            import shutil

            shutil.rmtree(bundle_dir)
        tmp_bundle.rename(bundle_dir)
        torch.save(state, out_root / STATE_DICT_NAME)
        (out_root / "BUILD.json").write_text(
            json.dumps(
                {
                    "recipe": RECIPE_VERSION,
                    "torch": torch.__version__,
                    "classifier_arch": CLASSIFIER_ARCH,
                    "seed": SEED,
                },
                indent=2,
            )
            + "\n"
        )
    return bundle_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help=f"cache root (default {default_cache_dir()})")
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="photos for calibration")
    p.add_argument("--no-variants", action="store_true", help="skip the fp16/int8 variants")
    p.add_argument("--force", action="store_true", help="rebuild even if a bundle is cached")
    args = p.parse_args(argv)
    root = args.out or default_cache_dir()
    if args.force or not (root / "bundle" / "manifest.json").is_file():
        path = build_bench_bundle(root, images=args.images, variants=not args.no_variants)
    else:
        path = bench_bundle_path(root)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
