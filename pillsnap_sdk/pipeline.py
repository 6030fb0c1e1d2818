"""The two-stage pipeline: options -> :class:`Identifier` -> typed :class:`IdentifyResult`.

Router (``mode="auto"``): run the detector; >= 2 pills -> classify every crop in one
batched run ("combo"); exactly 1 -> classify that crop; none -> classify the whole photo
and warn ``no_pill_detected``. Without a detector in the bundle, ``auto`` means ``single``.

Thread safety: an Identifier holds no mutable state after construction and onnxruntime's
``InferenceSession.run`` is thread-safe, so one instance may serve many threads; results
are identical to sequential calls (tested).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .bundle.loader import Bundle, load_bundle
from .bundle.manifest import BundleManifest, LabelsFile, ModelSpec
from .errors import BundleError, InvalidArgumentError, PillsnapError
from .image import DEFAULT_MAX_PIXELS, ImageInput, load_image
from .postprocess import calibrated_softmax, decode_yolo, is_identified
from .preprocessing import crop_with_margin, preprocess, preprocess_batch
from .results import BBox, BundleRef, Candidate, IdentifyResult, PillResult
from .runtime import ProviderArg, create_session

__all__ = ["Identifier", "Mode"]

Mode = Literal["auto", "single", "combo"]
#: Most crops per classifier run: bounds the onnxruntime arena's high-water mark (one
#: 96-crop batch pinned 620 MB more) and was as fast as one big batch on 2 cores.
CLASSIFIER_CHUNK = 16
_MODES = ("auto", "single", "combo")
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class _Detections:
    boxes: F32  # Nx4 xyxy, source pixels
    scores: F32  # N


class Identifier:
    """Identifies pills in photos with one verified model bundle.

    Build it with :meth:`from_bundle`; share it freely between threads.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        providers: Sequence[ProviderArg] | None = None,
        intra_op_threads: int | None = None,
        strict_providers: bool = False,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        m = bundle.manifest
        if max_image_pixels < 1:
            raise InvalidArgumentError("max_image_pixels must be >= 1")
        self._bundle = bundle
        self._max_pixels = max_image_pixels
        self._classes = bundle.labels.classes

        def session(spec: ModelSpec, dynamic_batch: bool) -> ort.InferenceSession:
            return create_session(
                bundle.model_bytes(spec.file),
                spec,
                providers=providers,
                intra_op_threads=intra_op_threads,
                strict_providers=strict_providers,
                dynamic_batch=dynamic_batch,
            )

        self._cls = session(m.classifier, dynamic_batch=True)
        out = self._cls.get_outputs()[0].shape
        if len(out) != 2 or (isinstance(out[1], int) and out[1] != len(self._classes)):
            raise BundleError(
                f"{m.classifier.file}: output shape {out} does not match "
                f"{len(self._classes)} classes in labels.json"
            )
        batch_dim = m.classifier.input_shape[0]
        self._cls_batch = batch_dim if isinstance(batch_dim, int) else None
        self._det = session(m.detector, dynamic_batch=False) if m.detector else None
        self._ref = BundleRef(name=m.name, version=m.version)

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        providers: Sequence[ProviderArg] | None = None,
        intra_op_threads: int | None = None,
        strict_providers: bool = False,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Identifier:
        """Load, verify (sha256 of every file) and open a bundle directory or ``.zip``."""
        return cls(
            load_bundle(path),
            providers=providers,
            intra_op_threads=intra_op_threads,
            strict_providers=strict_providers,
            max_image_pixels=max_image_pixels,
        )

    # -- introspection -------------------------------------------------------------------
    @property
    def manifest(self) -> BundleManifest:
        return self._bundle.manifest

    @property
    def labels(self) -> LabelsFile:
        return self._bundle.labels

    @property
    def has_detector(self) -> bool:
        return self._det is not None

    @property
    def providers(self) -> list[str]:
        return list(self._cls.get_providers())

    # -- public API ----------------------------------------------------------------------
    def identify(self, image: ImageInput, *, mode: Mode = "auto", top_k: int = 5) -> IdentifyResult:
        """Find and name every pill in one photo. Raises InvalidImageError for bad input."""
        return self.identify_batch([image], mode=mode, top_k=top_k)[0]

    def identify_batch(
        self, images: Sequence[ImageInput], *, mode: Mode = "auto", top_k: int = 5
    ) -> list[IdentifyResult]:
        """Identify several photos; all crops of all photos go through one classifier run."""
        self._check_args(mode, top_k)
        plans = [self._plan(img, mode) for img in images]
        crops = [c for p in plans for c in p.crops]
        t0 = time.perf_counter()
        probs, pre_ms = self._classify(crops)
        cls_ms = (time.perf_counter() - t0) * 1000.0 - pre_ms
        results: list[IdentifyResult] = []
        offset = 0
        share = 1.0 / max(len(plans), 1)
        for plan in plans:
            n = len(plan.crops)
            t1 = time.perf_counter()
            pills = [self._pill(probs[offset + i], plan, i, top_k) for i in range(n)]
            offset += n
            timings = dict(plan.timings)
            timings["classify_preprocess"] = pre_ms * share
            timings["classify"] = cls_ms * share
            timings["postprocess"] = (time.perf_counter() - t1) * 1000.0
            timings["total"] = (time.perf_counter() - plan.start) * 1000.0
            results.append(
                IdentifyResult(
                    mode_used=plan.mode_used,
                    pills=pills,
                    image_size=plan.size,
                    bundle=self._ref,
                    timings_ms=timings,
                    warnings=plan.warnings,
                )
            )
        return results

    # -- building blocks (also used by pillsnap_train's evaluation and the benchmarks) ----
    def detect(self, rgb: npt.NDArray[np.uint8]) -> tuple[F32, F32]:
        """Run the detector on an RGB image: ``(Nx4 xyxy boxes in source pixels, scores)``."""
        if self._det is None:
            raise InvalidArgumentError("this bundle has no detector; use mode='single'")
        det = self._detect(rgb, {})
        return det.boxes, det.scores

    def classify_probabilities(self, crops: Sequence[npt.NDArray[np.uint8]]) -> F32:
        """Calibrated class probabilities (``N x classes``) for RGB crops."""
        return self._classify(list(crops))[0]

    # -- internals -------------------------------------------------------------------------
    def _check_args(self, mode: str, top_k: int) -> None:
        if mode not in _MODES:
            raise InvalidArgumentError(f"mode must be one of {_MODES}, got {mode!r}")
        if mode == "combo" and self._det is None:
            raise InvalidArgumentError(
                f"bundle {self._ref.name} has no detector: mode='combo' needs one; use 'single'"
            )
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InvalidArgumentError(f"top_k must be a positive int, got {top_k!r}")

    def _plan(self, image: ImageInput, mode: str) -> _Plan:
        start = time.perf_counter()
        rgb = load_image(image, max_pixels=self._max_pixels)
        timings = {"decode": (time.perf_counter() - start) * 1000.0}
        h, w = rgb.shape[:2]
        plan = _Plan(start=start, size=(w, h), timings=timings)
        if mode == "single" or self._det is None:
            plan.crops.append(rgb)
            return plan
        det = self._detect(rgb, timings)
        margin = self._bundle.manifest.thresholds.crop_margin
        t = time.perf_counter()
        if len(det.scores) == 0:
            if mode == "combo":
                plan.mode_used = "combo"
            else:
                plan.crops.append(rgb)
            plan.warnings.append("no_pill_detected")
        else:
            plan.mode_used = "combo" if (mode == "combo" or len(det.scores) >= 2) else "single"
            for box, score in zip(det.boxes, det.scores, strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                plan.crops.append(crop_with_margin(rgb, (x1, y1, x2, y2), margin))
                plan.boxes.append((BBox(x1=x1, y1=y1, x2=x2, y2=y2), float(score)))
        timings["crop"] = (time.perf_counter() - t) * 1000.0
        return plan

    def _detect(self, rgb: npt.NDArray[np.uint8], timings: dict[str, float]) -> _Detections:
        assert self._det is not None
        spec = self._bundle.manifest.detector
        assert spec is not None
        th = self._bundle.manifest.thresholds
        t0 = time.perf_counter()
        tensor, geom = preprocess(rgb, spec.preprocessing)
        t1 = time.perf_counter()
        (raw,) = self._det.run(None, {spec.input_name: tensor[None]})[:1]
        t2 = time.perf_counter()
        boxes, scores = decode_yolo(
            np.asarray(raw, dtype=np.float32),
            th.detector_confidence,
            th.nms_iou,
            th.max_detections,
        )
        boxes = geom.to_source(boxes)
        keep = (boxes[:, 2] - boxes[:, 0] >= 1.0) & (boxes[:, 3] - boxes[:, 1] >= 1.0)
        det = _Detections(boxes[keep], scores[keep])
        t3 = time.perf_counter()
        timings["detect_preprocess"] = (t1 - t0) * 1000.0
        timings["detect"] = (t2 - t1) * 1000.0
        timings["detect_postprocess"] = (t3 - t2) * 1000.0
        return det

    def _classify(self, crops: list[npt.NDArray[np.uint8]]) -> tuple[F32, float]:
        n_cls = len(self._classes)
        if not crops:
            return np.empty((0, n_cls), dtype=np.float32), 0.0
        spec = self._bundle.manifest.classifier
        t0 = time.perf_counter()
        batch, _ = preprocess_batch(crops, spec.preprocessing)
        pre_ms = (time.perf_counter() - t0) * 1000.0
        step = self._cls_batch or CLASSIFIER_CHUNK
        chunks = []
        for i in range(0, len(crops), step):
            part = batch[i : i + step]
            if self._cls_batch and part.shape[0] < step:  # fixed-batch model: pad the tail
                pad = np.zeros((step - part.shape[0], *part.shape[1:]), dtype=np.float32)
                out = self._cls.run(None, {spec.input_name: np.concatenate([part, pad])})[0]
                chunks.append(np.asarray(out)[: part.shape[0]])
            else:
                chunks.append(np.asarray(self._cls.run(None, {spec.input_name: part})[0]))
        logits = np.concatenate(chunks).astype(np.float32, copy=False)
        if logits.shape != (len(crops), n_cls) or not np.isfinite(logits).all():
            raise PillsnapError(
                f"classifier returned {logits.shape} / non-finite logits; the bundle is broken"
            )
        temp = self._bundle.manifest.thresholds.temperature
        return calibrated_softmax(logits, temp), pre_ms

    def _pill(self, probs: F32, plan: _Plan, i: int, top_k: int) -> PillResult:
        k = min(top_k, probs.shape[0])
        top = np.argsort(-probs, kind="stable")[:k]
        cands = []
        for idx in top:
            entry = self._classes[int(idx)]
            cands.append(
                Candidate(
                    class_index=int(idx),
                    code=entry.code,
                    name=entry.name,
                    confidence=float(min(max(probs[idx], 0.0), 1.0)),
                    metadata=dict(entry.metadata),
                )
            )
        th = self._bundle.manifest.thresholds
        named = bool(is_identified(probs[None], th.unknown_threshold, th.unknown_margin)[0])
        status: Literal["identified", "unknown"] = "identified" if named else "unknown"
        bbox, det_conf = plan.boxes[i] if plan.boxes else (None, None)
        return PillResult(bbox=bbox, detection_confidence=det_conf, status=status, candidates=cands)


class _Plan:
    """Per-image work between decoding/detection and the shared classifier run."""

    __slots__ = ("boxes", "crops", "mode_used", "size", "start", "timings", "warnings")

    def __init__(self, start: float, size: tuple[int, int], timings: dict[str, float]) -> None:
        self.start = start
        self.size = size
        self.timings = timings
        self.crops: list[npt.NDArray[np.uint8]] = []
        self.boxes: list[tuple[BBox, float]] = []
        self.mode_used: Literal["single", "combo"] = "single"
        self.warnings: list[str] = []
