"""The floor: bare onnxruntime ``session.run`` on pre-made tensors, i.e. what the models
alone cost. Every SDK figure of the bench is a ratio to this.

Why two flavours: ORT's default session options are the issue's floor (so ``SDK / floor``
includes any cost of the SDK's own session choices), while sessions built by the SDK's
:func:`~pillsnap_sdk.runtime.create_session` isolate the Python-side overhead
(``SDK / that floor``) from what the session options cost or save
(``that floor / default floor``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ..bundle.loader import Bundle
from ..bundle.manifest import ModelSpec
from ..preprocessing import preprocess, preprocess_batch
from ..runtime import create_session

__all__ = ["Floor"]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


class Floor:
    """Bare ``InferenceSession.run`` on inputs made once: no decode, no resize, no Python
    around the call. ``sdk_options=True`` builds the sessions the way the SDK does."""

    def __init__(
        self, bundle: Bundle, providers: Sequence[str] | None = None, *, sdk_options: bool = False
    ) -> None:
        m = bundle.manifest
        provs = list(providers) if providers else ["CPUExecutionProvider"]
        self._m = m
        self.sdk_options = sdk_options

        def session(spec: ModelSpec, dynamic_batch: bool) -> Any:
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
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            return ort.InferenceSession(data, sess_options=opts, providers=provs)

        self.cls = session(m.classifier, True)
        self.det = session(m.detector, False) if m.detector else None
        batch = m.classifier.input_shape[0]
        self._fixed_batch = batch if isinstance(batch, int) else None

    def inputs(self, rgb: U8, crops: Sequence[U8]) -> tuple[F32 | None, list[F32]]:
        """Pre-made detector tensor and classifier chunk(s), exactly as the SDK makes them."""
        det = None
        if self.det is not None and self._m.detector is not None:
            det = preprocess(rgb, self._m.detector.preprocessing)[0][None]
        batch, _ = preprocess_batch(list(crops), self._m.classifier.preprocessing)
        step = self._fixed_batch or batch.shape[0]
        chunks: list[F32] = []
        for i in range(0, batch.shape[0], step):
            part = batch[i : i + step]
            if self._fixed_batch and part.shape[0] < step:
                pad = np.zeros((step - part.shape[0], *part.shape[1:]), dtype=np.float32)
                part = np.concatenate([part, pad])
            chunks.append(np.ascontiguousarray(part))
        return det, chunks

    def run(self, det: F32 | None, chunks: Sequence[F32]) -> tuple[float, float]:
        """Run the detector once and the classifier on every chunk: ``(det_ms, cls_ms)``."""
        t0 = time.perf_counter()
        if self.det is not None and det is not None and self._m.detector is not None:
            self.det.run(None, {self._m.detector.input_name: det})
        t1 = time.perf_counter()
        for chunk in chunks:
            self.cls.run(None, {self._m.classifier.input_name: chunk})
        t2 = time.perf_counter()
        return (t1 - t0) * 1000.0, (t2 - t1) * 1000.0
