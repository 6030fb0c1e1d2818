"""The two model stages, each behind a runner: pre-process -> forward -> post-process.

A *runner* is anything with onnxruntime's ``run(output_names, feeds)`` shape
(:class:`Runner`); the SDK builds onnxruntime sessions by default (:mod:`.runtime`), and
other engines come in through :meth:`Identifier.with_runners
<pillsnap_sdk.Identifier.with_runners>` (the training tools pass torch modules this way to
compare engines on exactly the SDK's pre- and post-processing). Why a stage per model: the
detector's letterbox + YOLO decoding and the classifier's chunked batch run are each
written once, here, and used by the pipeline, the bench and anyone measuring a model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from .errors import BundleError
from .postprocess import calibrated_softmax, decode_yolo
from .preprocessing import Letterbox, PreprocessSpec, preprocess, preprocess_batch

__all__ = [
    "CHUNK_BYTES",
    "CLASSIFIER_CHUNK",
    "MAX_ABS_LOGIT",
    "ClassifierStage",
    "Detections",
    "DetectorStage",
    "Runner",
    "runner_providers",
]

F32 = npt.NDArray[np.float32]
#: Most crops per classifier run: bounds the onnxruntime arena's high-water mark (one
#: 96-crop batch pinned 620 MB more) and was as fast as one big batch on 2 cores.
CLASSIFIER_CHUNK = 16
#: Most bytes of preprocessed crops alive at once: one float32 tensor of every crop is
#: ~600 KB a crop at 224 px whatever the crop's size (4000 crops: 2.2 GB), and a re-sealed
#: manifest may ask for a 4096 px input, so large inputs get fewer crops per run.
CHUNK_BYTES = 64 * 1024 * 1024
#: Largest classifier logit magnitude accepted from a model: real classifiers stay within
#: about +-100; 1e38 (a tampered model) named every photo at confidence 1.0.
MAX_ABS_LOGIT = 1e4


class Runner(Protocol):
    """onnxruntime's ``InferenceSession.run`` shape: the first output is the one used."""

    def run(self, output_names: Any, input_feed: dict[str, Any]) -> Sequence[Any]: ...


def _run(runner: Runner, name: str, tensor: F32) -> F32:
    """One runner call's first output as float32; an engine's own error, or an output
    that is not a numeric array (a custom runner returning ``[]`` or strings), becomes a
    :class:`BundleError` rather than an IndexError/ValueError from deep inside numpy."""
    try:
        outputs = runner.run(None, {name: tensor})
        first = next(iter(outputs), None)
    except Exception as exc:  # onnxruntime's own Fail/InvalidArgument types
        raise BundleError(f"the model failed to run: {exc}") from exc
    if first is None:
        raise BundleError("the model returned no output")
    try:
        out = np.asarray(first, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BundleError(f"the model's output is not a numeric array: {exc}") from exc
    if out.ndim == 0:
        raise BundleError("the model's output is a scalar, not an array")
    return out


class Detections(NamedTuple):
    """Detector output: ``boxes`` (Nx4 xyxy, source-image pixels) and ``scores`` (N),
    best first. A named tuple, so ``boxes, scores = idf.detect(rgb)`` keeps working."""

    boxes: F32
    scores: F32


class DetectorStage:
    """Letterbox -> runner -> YOLO decode + NMS -> boxes in source pixels."""

    def __init__(self, runner: Runner, input_name: str, preprocessing: PreprocessSpec) -> None:
        self.runner = runner
        self.input_name = input_name
        self.preprocessing = preprocessing

    def forward(self, rgb: npt.NDArray[np.uint8]) -> tuple[F32, Letterbox]:
        """The raw network output for one RGB image, and the letterbox that maps it back."""
        raw, geom, _ = self._forward(rgb)
        return raw, geom

    def _forward(self, rgb: npt.NDArray[np.uint8]) -> tuple[F32, Letterbox, float]:
        t0 = time.perf_counter()
        tensor, geom = preprocess(rgb, self.preprocessing)
        pre_ms = (time.perf_counter() - t0) * 1000.0
        return _run(self.runner, self.input_name, tensor[None]), geom, pre_ms

    def __call__(
        self,
        rgb: npt.NDArray[np.uint8],
        *,
        confidence: float,
        nms_iou: float,
        max_detections: int,
        timings: dict[str, float] | None = None,
    ) -> Detections:
        """Detections in source pixels (not filtered by size); ``timings`` gets the
        ``detect_preprocess`` / ``detect`` (runner) / ``detect_postprocess`` split when given."""
        t0 = time.perf_counter()
        raw, geom, pre_ms = self._forward(rgb)
        t1 = time.perf_counter()
        try:
            boxes, scores = decode_yolo(raw, confidence, nms_iou, max_detections)
        except ValueError as exc:
            raise BundleError(f"detector: {exc}; the bundle is broken") from exc
        det = Detections(geom.to_source(boxes), scores)
        if timings is not None:
            timings["detect_preprocess"] = pre_ms
            timings["detect"] = (t1 - t0) * 1000.0 - pre_ms
            timings["detect_postprocess"] = (time.perf_counter() - t1) * 1000.0
        return det


class ClassifierStage:
    """Preprocessed crops -> logits, in chunks of at most ``chunk`` per runner call.

    A model exported with a fixed batch (``fixed_batch``) gets every chunk at that size,
    the tail padded with zeros and the padding's rows dropped.
    """

    def __init__(
        self,
        runner: Runner,
        input_name: str,
        *,
        chunk: int = CLASSIFIER_CHUNK,
        fixed_batch: int | None = None,
    ) -> None:
        self.runner = runner
        self.input_name = input_name
        self.chunk = fixed_batch or chunk
        self.fixed_batch = fixed_batch

    def probabilities(
        self,
        crops: Sequence[npt.NDArray[np.uint8]],
        spec: PreprocessSpec,
        n_classes: int,
        temperature: float,
    ) -> tuple[F32, float]:
        """Calibrated probabilities (``N x n_classes``) for RGB crops and the milliseconds
        spent preprocessing; crops are preprocessed a chunk at a time (:data:`CHUNK_BYTES`).
        Logits of the wrong shape, non-finite or beyond :data:`MAX_ABS_LOGIT` are a
        :class:`BundleError`: the model, not the photo, is broken."""
        if not crops:
            return np.empty((0, n_classes), dtype=np.float32), 0.0
        h, w = spec.size
        step = self.fixed_batch or max(1, min(self.chunk, CHUNK_BYTES // (12 * h * w)))
        pre_ms = 0.0
        parts: list[F32] = []
        for i in range(0, len(crops), step):
            t0 = time.perf_counter()
            batch, _ = preprocess_batch(list(crops[i : i + step]), spec)
            pre_ms += (time.perf_counter() - t0) * 1000.0
            parts.append(self.logits(batch))
            del batch
        logits = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if logits.shape != (len(crops), n_classes) or not np.isfinite(logits).all():
            raise BundleError(
                f"classifier returned {logits.shape} / non-finite logits; the bundle is broken"
            )
        peak = float(np.abs(logits).max()) if logits.size else 0.0
        if peak > MAX_ABS_LOGIT:
            raise BundleError(
                f"classifier returned a logit of {peak:.3g} (beyond +-{MAX_ABS_LOGIT:g}); "
                "the bundle is broken"
            )
        return calibrated_softmax(logits, temperature), pre_ms

    def logits(self, batch: F32) -> F32:
        """Logits (``N x classes``, float32) for an ``N x 3 x H x W`` batch; N may be 0."""
        if len(batch) == 0:
            return np.zeros((0, 0), np.float32)
        step = self.chunk
        chunks = []
        for i in range(0, len(batch), step):
            part = batch[i : i + step]
            if self.fixed_batch and part.shape[0] < step:  # pad the tail
                pad = np.zeros((step - part.shape[0], *part.shape[1:]), dtype=np.float32)
                out = _run(self.runner, self.input_name, np.concatenate([part, pad]))
                chunks.append(out[: part.shape[0]])
            else:
                chunks.append(_run(self.runner, self.input_name, part))
        if any(c.shape[1:] != chunks[0].shape[1:] for c in chunks):
            raise BundleError(f"the model's outputs changed shape between runs: {chunks[0].shape}")
        return np.concatenate(chunks)


def runner_providers(runner: Runner) -> list[str]:
    """What a runner runs on: onnxruntime's providers, or the runner's type name."""
    get = getattr(runner, "get_providers", None)
    if callable(get):
        return list(get())
    return [type(runner).__name__]
