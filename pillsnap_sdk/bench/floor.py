"""The floor: bare onnxruntime ``session.run`` on pre-made tensors, i.e. what the models
alone cost. Every SDK figure of the bench is a ratio to this.

Why a configurable floor: onnxruntime's default session options are not the fastest a
careful user gets on every machine (on 2 cores, 2 intra-op threads and the whole crop
batch in one run beat the defaults), and a floor that is easy to beat makes the SDK look
better than it is. :mod:`.floorsearch` therefore searches the bare configurations
(:class:`FloorConfig`) and the bench's floor is the best one found. Sessions built by the
SDK's :func:`~pillsnap_sdk.runtime.create_session` (``sdk_options=True``) isolate the
Python-side overhead (``SDK / that floor``) from what the session options cost or save.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ..bundle.loader import Bundle
from ..bundle.manifest import ModelSpec
from ..preprocessing import preprocess, preprocess_batch
from ..runtime import create_session

__all__ = ["Floor", "FloorConfig", "SessionConfig"]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
OptLevel = Literal["basic", "extended", "all"]
_OPT_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Bare session options for one model; ``None`` leaves onnxruntime's default."""

    threads: int | None = None
    spinning: bool | None = None
    opt_level: OptLevel = "all"

    def options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = _OPT_LEVELS[self.opt_level]
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
        if self.spinning is not None:
            opts.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if self.spinning else "0"
            )
        return opts

    @property
    def label(self) -> str:
        threads = "default" if self.threads is None else str(self.threads)
        spin = "default" if self.spinning is None else ("on" if self.spinning else "off")
        return f"threads {threads}, spinning {spin}, opt {self.opt_level}"


@dataclass(frozen=True, slots=True)
class FloorConfig:
    """Bare options per model and how the crops are batched (``chunk=None``: all crops of
    the photo in one classifier run). The default is onnxruntime's defaults."""

    detector: SessionConfig = field(default_factory=SessionConfig)
    classifier: SessionConfig = field(default_factory=SessionConfig)
    chunk: int | None = None

    @property
    def label(self) -> str:
        batch = "whole batch" if self.chunk is None else f"chunks of {self.chunk}"
        return f"detector: {self.detector.label}; classifier: {self.classifier.label}, {batch}"


class Floor:
    """Bare ``InferenceSession.run`` on inputs made once: no decode, no resize, no Python
    around the call. ``config`` sets the bare options (default: onnxruntime's);
    ``sdk_options=True`` builds the sessions the way the SDK does instead."""

    def __init__(
        self,
        bundle: Bundle,
        providers: Sequence[str] | None = None,
        *,
        sdk_options: bool = False,
        config: FloorConfig | None = None,
    ) -> None:
        m = bundle.manifest
        provs = list(providers) if providers else ["CPUExecutionProvider"]
        self._m = m
        self.sdk_options = sdk_options
        self.config = config or FloorConfig()

        def session(spec: ModelSpec, dynamic_batch: bool, opts: SessionConfig) -> Any:
            data = bundle.model_bytes(spec.file)
            if sdk_options:
                return create_session(
                    data,
                    spec,
                    providers=provs,
                    intra_op_threads=None,
                    strict_providers=False,
                    dynamic_batch=dynamic_batch,
                )
            return ort.InferenceSession(data, sess_options=opts.options(), providers=provs)

        self.cls = session(m.classifier, True, self.config.classifier)
        self.det = session(m.detector, False, self.config.detector) if m.detector else None
        batch = m.classifier.input_shape[0]
        self._fixed_batch = batch if isinstance(batch, int) else None

    def detector_input(self, rgb: U8) -> F32 | None:
        """The detector tensor exactly as the SDK makes it (None without a detector)."""
        if self.det is None or self._m.detector is None:
            return None
        return preprocess(rgb, self._m.detector.preprocessing)[0][None]

    def chunks(self, batch: F32, chunk: int | None = None) -> list[F32]:
        """``batch`` cut into this floor's classifier runs (``chunk`` overrides)."""
        step = self._fixed_batch or chunk or self.config.chunk or max(batch.shape[0], 1)
        out: list[F32] = []
        for i in range(0, batch.shape[0], step):
            part = batch[i : i + step]
            if self._fixed_batch and part.shape[0] < step:
                pad = np.zeros((step - part.shape[0], *part.shape[1:]), dtype=np.float32)
                part = np.concatenate([part, pad])
            out.append(np.ascontiguousarray(part))
        return out

    def inputs(self, rgb: U8, crops: Sequence[U8]) -> tuple[F32 | None, list[F32]]:
        """Pre-made detector tensor and classifier chunk(s), exactly as the SDK makes them."""
        batch, _ = preprocess_batch(list(crops), self._m.classifier.preprocessing)
        return self.detector_input(rgb), self.chunks(batch)

    def run_detector(self, det: F32 | None) -> None:
        if self.det is not None and det is not None and self._m.detector is not None:
            self.det.run(None, {self._m.detector.input_name: det})

    def run_classifier(self, chunks: Sequence[F32]) -> None:
        for chunk in chunks:
            self.cls.run(None, {self._m.classifier.input_name: chunk})

    def run(self, det: F32 | None, chunks: Sequence[F32]) -> tuple[float, float]:
        """Run the detector once and the classifier on every chunk: ``(det_ms, cls_ms)``."""
        t0 = time.perf_counter()
        self.run_detector(det)
        t1 = time.perf_counter()
        self.run_classifier(chunks)
        t2 = time.perf_counter()
        return (t1 - t0) * 1000.0, (t2 - t1) * 1000.0
