"""The two-stage pipeline: options -> :class:`Identifier` -> typed :class:`IdentifyResult`.

Per photo: decode (:mod:`.photo`: big JPEGs only as finely as needed) -> route
(:mod:`.router`: detector, crops) -> batched classifier runs -> answers (:mod:`.answers`:
candidates, status). Without a detector in the bundle, ``auto`` means ``single``.

Each model runs behind a runner (:mod:`.stages`, opened by :mod:`.sessions`): onnxruntime
sessions built from the bundle by default, or any object with the same
``run(output_names, feeds)`` shape given to :meth:`Identifier.from_bundle` (``runners=``)
or :meth:`Identifier.with_runners`.

Thread safety: an Identifier holds no mutable state after construction and onnxruntime's
``InferenceSession.run`` is thread-safe, so one instance may serve many threads; results
are identical to sequential calls (tested).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, overload

import numpy as np
import numpy.typing as npt

from .answers import build_results
from .bundle.loader import Bundle, load_bundle
from .bundle.manifest import BundleManifest, LabelsFile
from .bundle.variants import select_precision
from .errors import InvalidArgumentError, PillsnapError
from .image import (
    DEFAULT_MAX_PIXELS,
    ChannelOrder,
    ImageInput,
    check_channel_order,
    check_max_pixels,
    load_image,
)
from .photo import Photo, load_photo, to_full
from .results import BundleRef, IdentifyResult
from .router import GROUP_BYTES, Plan, route
from .runtime import (
    ProviderArg,
    check_providers,
    check_threads,
    providers_from_env,
    threads_from_env,
)
from .sessions import Runners, check_runner_objects, open_stages
from .stages import (
    CLASSIFIER_CHUNK,
    ClassifierStage,
    Detections,
    DetectorStage,
    Runner,
    runner_providers,
)

__all__ = ["CLASSIFIER_CHUNK", "Identifier", "Mode", "Runners"]

Mode = Literal["auto", "single", "combo"]
#: Default for ``max_concurrent_runs``: onnxruntime runs that may execute at once per
#: Identifier. Each concurrent run grows the session arena by its own working set, which
#: the arena keeps; 8 unbounded threads took RSS from 303 to 1,009 MB (docs/reliability.md).
DEFAULT_CONCURRENT_RUNS = 2
_MODES = ("auto", "single", "combo")
F32 = npt.NDArray[np.float32]


class Identifier:
    """Identifies pills in photos with one verified model bundle.

    Build it with :meth:`from_bundle` or :meth:`from_pretrained`; share it freely between
    threads; :meth:`close` it (or use ``with``) to free the models' memory at once.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        providers: Sequence[ProviderArg] | None = None,
        intra_op_threads: int | None = None,
        strict_providers: bool = False,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        max_concurrent_runs: int = DEFAULT_CONCURRENT_RUNS,
        runners: Runners | None = None,
    ) -> None:
        if not isinstance(bundle, Bundle):
            raise InvalidArgumentError(
                f"Identifier needs a loaded Bundle; use Identifier.from_bundle(path), "
                f"got {type(bundle).__name__}"
            )
        self._max_pixels = check_max_pixels(max_image_pixels)
        if (
            isinstance(max_concurrent_runs, bool)
            or not isinstance(max_concurrent_runs, int)
            or max_concurrent_runs < 1
        ):
            raise InvalidArgumentError(
                f"max_concurrent_runs must be a positive int, got {max_concurrent_runs!r}"
            )
        # At most this many calls decode and run at once, whatever the number of caller
        # threads: bounds decoded photos, tensors and the onnxruntime arenas (measured).
        self._slots = threading.BoundedSemaphore(max_concurrent_runs)
        if providers is None:  # the argument wins; then $PILLSNAP_PROVIDERS; then CPU
            providers = providers_from_env()
        providers = check_providers(providers)
        self._bundle = bundle
        self._classes = bundle.labels.classes
        self._closed = False
        if intra_op_threads is None:
            intra_op_threads = threads_from_env()
        intra_op_threads = check_threads(intra_op_threads)
        if not isinstance(strict_providers, bool):
            raise InvalidArgumentError(
                f"strict_providers must be True or False, got {strict_providers!r}"
            )
        if runners is not None and not isinstance(runners, Runners):
            raise InvalidArgumentError(
                "runners must be a pillsnap_sdk.Runners(classifier=..., detector=...), "
                f"got {type(runners).__name__}"
            )
        if runners is not None:
            check_runner_objects(classifier=runners.classifier, detector=runners.detector)

        self._cls, self._det = open_stages(
            bundle,
            runners=runners or Runners(),
            providers=providers,
            intra_op_threads=intra_op_threads,
            strict_providers=strict_providers,
        )
        m = bundle.manifest
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
        max_concurrent_runs: int = DEFAULT_CONCURRENT_RUNS,
        runners: Runners | None = None,
        precision: str | None = None,
    ) -> Identifier:
        """Load, verify (sha256 of every file) and open a bundle directory or ``.zip``.

        ``max_image_pixels`` bounds every photo (and, at 8 bytes per pixel, the memory
        its decode may use); ``max_concurrent_runs`` bounds how many onnxruntime runs
        execute at once, whatever the number of caller threads. ``runners`` replaces
        onnxruntime for the classifier and/or detector (see :class:`Runners`).
        ``precision`` (e.g. ``"int8"``; default ``$PILLSNAP_PRECISION``, else fp32) runs
        the bundle's gated variant of the classifier (:mod:`.bundle.variants`).
        """
        check_max_pixels(max_image_pixels)
        check_providers(providers)
        return cls(
            select_precision(load_bundle(path), precision),
            providers=providers,
            intra_op_threads=intra_op_threads,
            strict_providers=strict_providers,
            max_image_pixels=max_image_pixels,
            max_concurrent_runs=max_concurrent_runs,
            runners=runners,
        )

    def with_runners(
        self, *, classifier: Runner | None = None, detector: Runner | None = None
    ) -> Identifier:
        """The same Identifier (bundle, preprocessing, router, thresholds) with other
        engines for the given models, e.g. torch modules to compare engines on exactly
        the SDK's code path. ``self`` is unchanged."""
        self._require_open()
        check_runner_objects(classifier=classifier, detector=detector)
        twin = copy.copy(self)
        if classifier is not None:
            twin._cls = ClassifierStage(
                classifier, self._cls.input_name, fixed_batch=self._cls.fixed_batch
            )
        if detector is not None:
            if self._det is None:
                raise InvalidArgumentError("this bundle has no detector to replace")
            twin._det = DetectorStage(detector, self._det.input_name, self._det.preprocessing)
        return twin

    @classmethod
    def from_pretrained(
        cls,
        name_or_url: str,
        *,
        sha256: str | None = None,
        providers: Sequence[ProviderArg] | None = None,
        intra_op_threads: int | None = None,
        strict_providers: bool = False,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        precision: str | None = None,
    ) -> Identifier:
        """Open an installed bundle package by name, or a bundle zip from a pinned URL.

        ``name_or_url`` is the name a bundle wheel registered (``"pushin-pill-edge"``, see
        ``pillsnap-train bundle wheel``), or an ``http(s)://`` URL of a bundle zip; a URL
        needs ``sha256`` (of the zip) and is cached under ``$PILLSNAP_HOME`` after the hash
        matched. Installed packages are pinned with pip, so ``sha256`` is refused for a
        name. Either way the bundle is verified file by file on load, as in from_bundle.
        """
        from .download import fetch_bundle, is_url
        from .installed import installed_bundle_path

        if not isinstance(name_or_url, str) or not name_or_url:
            raise InvalidArgumentError(
                f"name_or_url must be a bundle name or URL, got {name_or_url!r}"
            )
        if is_url(name_or_url):
            path = fetch_bundle(name_or_url, sha256)
        elif sha256 is not None:
            raise InvalidArgumentError(
                "sha256 pins a URL download; an installed bundle package is pinned by its "
                "version (pip install 'pillsnap-bundle-NAME==X.Y.Z')"
            )
        else:
            path = installed_bundle_path(name_or_url)
        return cls.from_bundle(
            path,
            providers=providers,
            intra_op_threads=intra_op_threads,
            strict_providers=strict_providers,
            max_image_pixels=max_image_pixels,
            precision=precision,
        )

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Drop the ONNX sessions and the bundle bytes now; later calls raise.

        Idempotent. Do not close while other threads still call :meth:`identify`.
        """
        if self._closed:
            return
        self._closed = True
        del self._cls
        self._det = None
        self._bundle = dataclasses.replace(self._bundle, files={})

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Identifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _require_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError(
                f"this Identifier ({self._ref.name} {self._ref.version}) was closed; "
                "create a new one"
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
        """The classifier runner's providers (onnxruntime) or its type name (others)."""
        self._require_open()
        return runner_providers(self._cls.runner)

    # -- public API ----------------------------------------------------------------------
    def identify(
        self,
        image: ImageInput,
        *,
        mode: Mode = "auto",
        top_k: int = 5,
        channel_order: ChannelOrder = "RGB",
    ) -> IdentifyResult:
        """Find and name every pill in one photo. Raises InvalidImageError for bad input.

        ``channel_order="BGR"`` for numpy arrays from OpenCV (``cv2.imread``); files and
        PIL images carry their own channel order and ignore it.
        """
        return self.identify_batch([image], mode=mode, top_k=top_k, channel_order=channel_order)[0]

    async def identify_async(
        self,
        image: ImageInput,
        *,
        mode: Mode = "auto",
        top_k: int = 5,
        channel_order: ChannelOrder = "RGB",
    ) -> IdentifyResult:
        """:meth:`identify` in a worker thread, for asyncio servers (the loop stays free).

        onnxruntime releases the GIL while it runs, so concurrent awaits overlap.
        """
        import asyncio

        return await asyncio.to_thread(
            self.identify, image, mode=mode, top_k=top_k, channel_order=channel_order
        )

    @overload
    def identify_batch(
        self,
        images: Sequence[ImageInput],
        *,
        mode: Mode = ...,
        top_k: int = ...,
        channel_order: ChannelOrder = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[IdentifyResult]: ...

    @overload
    def identify_batch(
        self,
        images: Sequence[ImageInput],
        *,
        mode: Mode = ...,
        top_k: int = ...,
        channel_order: ChannelOrder = ...,
        return_exceptions: bool,
    ) -> list[IdentifyResult | PillsnapError]: ...

    def identify_batch(
        self,
        images: Sequence[ImageInput],
        *,
        mode: Mode = "auto",
        top_k: int = 5,
        channel_order: ChannelOrder = "RGB",
        return_exceptions: bool = False,
    ) -> list[IdentifyResult] | list[IdentifyResult | PillsnapError]:
        """Identify several photos; crops of consecutive photos share classifier runs
        while they fit one (never slower than a loop of :meth:`identify`).

        A bad photo raises its :class:`PillsnapError` for the whole batch, unless
        ``return_exceptions=True``: then that error takes the photo's place in the list
        (like ``asyncio.gather``) and the other photos are still identified. A bad
        ``mode``/``top_k``/``channel_order`` concerns every photo and always raises.
        """
        self._require_open()
        if not isinstance(images, (list, tuple)):
            raise InvalidArgumentError(
                f"identify_batch takes a list or tuple of images, got {type(images).__name__}; "
                "use identify() for one photo"
            )
        self._check_args(mode, top_k)
        check_channel_order(channel_order)
        if not isinstance(return_exceptions, bool):  # "no" is truthy: it would mean True
            raise InvalidArgumentError(
                f"return_exceptions must be True or False, got {return_exceptions!r:.40}"
            )
        with self._slots:
            return self._identify_batch(images, mode, top_k, channel_order, return_exceptions)

    def _identify_batch(
        self,
        images: Sequence[ImageInput],
        mode: Mode,
        top_k: int,
        channel_order: ChannelOrder,
        return_exceptions: bool,
    ) -> list[IdentifyResult | PillsnapError]:
        """Photos are planned (decoded, detected, cropped) in order and their crops
        classified together only while they fit one classifier run (``self._cls.chunk``):
        a combined run saves per-run overhead for photos of few pills, but a batch of many
        photos' crops was slower than a loop of ``identify`` (one 176-crop tensor and 8
        decoded photos held at once), so bigger work goes group by group."""
        results: list[IdentifyResult | PillsnapError] = []
        group: list[Plan | PillsnapError] = []
        n_crops = held = 0
        for img in images:
            try:
                plan: Plan | PillsnapError = self._plan(img, mode, channel_order)
            except PillsnapError as exc:
                if not return_exceptions:
                    raise
                plan = exc
            n = len(plan.crops) if isinstance(plan, Plan) else 0
            size = plan.held_bytes() if isinstance(plan, Plan) else 0
            if group and (n_crops + n > self._cls.chunk or held + size > GROUP_BYTES):
                results += self._answer(group, top_k)
                group, n_crops, held = [], 0, 0
            group.append(plan)
            n_crops += n
            held += size
        return results + self._answer(group, top_k)

    def _answer(
        self, plans: list[Plan | PillsnapError], top_k: int
    ) -> list[IdentifyResult | PillsnapError]:
        """One classifier pass over the plans' crops, then each photo's result."""
        crops = [c for p in plans if isinstance(p, Plan) for c in p.crops]
        t0 = time.perf_counter()
        probs, pre_ms = self._classify(crops)
        cls_ms = (time.perf_counter() - t0) * 1000.0 - pre_ms
        th = self._bundle.manifest.thresholds
        return build_results(plans, probs, (pre_ms, cls_ms), self._classes, th, self._ref, top_k)

    # -- building blocks (also used by the training tools' evaluation and the benchmarks) --
    def detect(self, image: ImageInput, *, channel_order: ChannelOrder = "RGB") -> Detections:
        """Run the detector on one photo: :class:`Detections` (Nx4 xyxy boxes in source
        pixels, scores), with the bundle's thresholds; boxes under 1 px are dropped. Only
        confident boxes: a second tier's boxes count as pills only once named (identify).

        Takes any :func:`~pillsnap_sdk.image.load_image` input (an RGBA or grey array is
        converted, a bad one is an InvalidImageError); an RGB ``uint8`` array is used as is.
        """
        self._require_open()
        if self._det is None:
            raise InvalidArgumentError("this bundle has no detector; use mode='single'")
        with self._slots:
            photo = self._load(image, channel_order, detect=True)
            det = self._detect(photo.rgb, {})
        sure = det.scores >= self._bundle.manifest.thresholds.detector_confidence  # tier 1
        return Detections(to_full(det.boxes[sure], photo), det.scores[sure])

    def classify_probabilities(self, crops: Sequence[npt.NDArray[np.uint8]]) -> F32:
        """Calibrated class probabilities (``N x classes``) for RGB crops."""
        self._require_open()
        if not isinstance(crops, (list, tuple)):
            raise InvalidArgumentError(f"crops must be a list of RGB arrays, got {type(crops)}")
        with self._slots:
            rgb = [load_image(c, max_pixels=self._max_pixels) for c in crops]
            return self._classify(rgb)[0]

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

    def _plan(self, image: ImageInput, mode: str, channel_order: ChannelOrder) -> Plan:
        start = time.perf_counter()
        photo = self._load(image, channel_order, detect=mode != "single")
        timings = {"decode": (time.perf_counter() - start) * 1000.0}
        th = self._bundle.manifest.thresholds
        return route(
            photo,
            mode=mode,
            detect=self._detect if self._det is not None else None,
            crop_margin=th.crop_margin,
            start=start,
            timings=timings,
            confident_at=None if th.detector_confidence_named is None else th.detector_confidence,
        )

    def _load(self, image: ImageInput, channel_order: ChannelOrder, detect: bool) -> Photo:
        """Decoded as coarsely as the detector's input allows when it runs (big JPEGs)."""
        check_channel_order(channel_order)
        det = self._det.preprocessing if detect and self._det is not None else None
        return load_photo(
            image, max_pixels=self._max_pixels, channel_order=channel_order, detector=det
        )

    def _detect(self, rgb: npt.NDArray[np.uint8], timings: dict[str, float]) -> Detections:
        assert self._det is not None
        th = self._bundle.manifest.thresholds
        det = self._det(
            rgb,
            confidence=th.detector_floor,
            nms_iou=th.nms_iou,
            max_detections=th.max_detections,
            timings=timings,
        )
        t = time.perf_counter()
        boxes, scores = det
        keep = (boxes[:, 2] - boxes[:, 0] >= 1.0) & (boxes[:, 3] - boxes[:, 1] >= 1.0)
        kept = Detections(boxes[keep], scores[keep])
        timings["detect_postprocess"] += (time.perf_counter() - t) * 1000.0
        return kept

    def _classify(self, crops: list[npt.NDArray[np.uint8]]) -> tuple[F32, float]:
        m = self._bundle.manifest
        return self._cls.probabilities(
            crops, m.classifier.preprocessing, len(self._classes), m.thresholds.temperature
        )
