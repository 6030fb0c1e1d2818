"""The seed project's way of serving the models, reproduced on the same ONNX files.

Why keep it: it is the baseline the SDK replaced, so "(c) seed-style serving" in the peer
table shows what the SDK's choices (no CLAHE, float32 in-place preprocessing, one batched
classifier run) buy on the same weights. ``benchmarks/explore.py ablation`` times its
pieces one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pillsnap_sdk.bundle.loader import Bundle
from pillsnap_sdk.preprocessing import PreprocessSpec

__all__ = ["SeedStylePeer"]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


class SeedStylePeer:
    """The seed project's serving style on the same ONNX models, reproduced faithfully.

    Per photo: decode with ``cv2.imdecode``, CLAHE on the L channel of LAB (clip 2.0,
    8x8 tiles), letterbox with ``cv2.copyMakeBorder``, normalise in float64 numpy,
    ``cv2.dnn.NMSBoxes``, then **one classifier run per crop**, each crop normalised in
    float64 and soft-maxed in float64. Sessions are built once with default options.
    Calling it returns ``(class index, probability)`` per crop.
    """

    def __init__(self, bundle: Bundle, providers: Sequence[str] | None = None) -> None:
        m = bundle.manifest
        provs = list(providers) if providers else ["CPUExecutionProvider"]
        self._m = m
        self._cls = ort.InferenceSession(bundle.model_bytes(m.classifier.file), providers=provs)
        self._det = (
            ort.InferenceSession(bundle.model_bytes(m.detector.file), providers=provs)
            if m.detector
            else None
        )
        batch = m.classifier.input_shape[0]
        self._cls_batch = batch if isinstance(batch, int) else 1
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    @staticmethod
    def _letterbox(rgb: U8, spec: PreprocessSpec) -> tuple[U8, float, int, int]:
        h, w = rgb.shape[:2]
        out_h, out_w = spec.size
        r = min(out_w / w, out_h / h)
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        left, top = (out_w - nw) // 2, (out_h - nh) // 2
        pad = (spec.pad_value,) * 3
        boxed = cv2.copyMakeBorder(
            resized, top, out_h - nh - top, left, out_w - nw - left, cv2.BORDER_CONSTANT, value=pad
        )
        return np.asarray(boxed, dtype=np.uint8), r, left, top

    @staticmethod
    def _normalise64(img: U8, spec: PreprocessSpec) -> F32:
        x = img.astype(np.float64) / 255.0
        if spec.colour_order == "BGR":
            x = x[:, :, ::-1]
        x = (x - np.asarray(spec.mean, dtype=np.float64)) / np.asarray(spec.std, dtype=np.float64)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))

    def _classify_one(self, crop: U8) -> tuple[int, float]:
        spec = self._m.classifier.preprocessing
        boxed, _, _, _ = self._letterbox(crop, spec)
        x = self._normalise64(boxed, spec)
        if self._cls_batch > 1:
            x = np.concatenate([x, np.zeros((self._cls_batch - 1, *x.shape[1:]), np.float32)])
        logits = np.asarray(self._cls.run(None, {self._m.classifier.input_name: x})[0])
        z = logits[0].astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        return int(p.argmax()), float(p.max())

    def __call__(self, data: bytes) -> list[tuple[int, float]]:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("cv2 cannot decode the photo")
        lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
        lum, a, b = cv2.split(lab)
        bgr = cv2.cvtColor(cv2.merge((self._clahe.apply(lum), a, b)), cv2.COLOR_LAB2BGR)
        rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        det_spec = self._m.detector
        if self._det is None or det_spec is None:
            return [self._classify_one(rgb)]
        th = self._m.thresholds
        boxed, r, left, top = self._letterbox(rgb, det_spec.preprocessing)
        out = np.asarray(
            self._det.run(
                None, {det_spec.input_name: self._normalise64(boxed, det_spec.preprocessing)}
            )[0]
        )[0]
        preds = out.T
        scores = preds[:, 4:].max(axis=1)
        keep = scores >= th.detector_confidence
        h, w = rgb.shape[:2]
        rects: list[list[int]] = []
        confs: list[float] = []
        for (cx, cy, bw, bh), s in zip(preds[keep, :4], scores[keep], strict=True):
            x1 = (cx - bw / 2 - left) / r
            y1 = (cy - bh / 2 - top) / r
            rects.append([int(x1), int(y1), int(bw / r), int(bh / r)])
            confs.append(float(s))
        idx = cv2.dnn.NMSBoxes(rects, confs, th.detector_confidence, th.nms_iou) if rects else []
        results = []
        for i in np.asarray(idx).reshape(-1)[: th.max_detections]:
            x, y, bw, bh = rects[int(i)]
            mx, my = int(bw * th.crop_margin), int(bh * th.crop_margin)
            x1, y1 = max(0, x - mx), max(0, y - my)
            x2, y2 = min(w, x + bw + mx), min(h, y + bh + my)
            if x2 > x1 and y2 > y1:
                results.append(self._classify_one(rgb[y1:y2, x1:x2]))
        return results or [self._classify_one(rgb)]
