"""Evaluation shared by calibration, parity gates and the model card.

The SDK's own :class:`~pillsnap_sdk.Identifier` is the thing measured: end-to-end numbers
come from the code path users run. For the torch-vs-ONNX pipeline comparison the same
Identifier is given torch "sessions" (:class:`TorchRunner`), so the only difference between
the two runs is the inference engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pillsnap_sdk import Identifier, IdentifyResult

from .calibrate import match_indices

__all__ = [
    "GroundTruthImage",
    "PipelineScore",
    "TorchRunner",
    "classifier_agreement",
    "score_pipeline",
    "with_torch_models",
]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GroundTruthImage:
    path: str
    boxes: F32  # Nx4 xyxy
    codes: list[str]


@dataclass
class PipelineScore:
    n_pills: int = 0
    found: int = 0  # matched at IoU >= 0.5 (or whole-photo single pill)
    correct: int = 0  # found and named right (top-1, identified)
    unknown: int = 0  # matched pills reported "unknown"
    wrong: int = 0  # matched pills named as another drug with status "identified"
    false_positives: int = 0
    per_class: dict[str, list[int]] = field(default_factory=dict)  # code -> [correct, n]
    #: Per ground-truth pill, in input order: the code it was named, "?" for unknown, ""
    #: for not found. Two runs over the same photos compare pill by pill with it.
    answers: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.n_pills, 1)

    @property
    def recall(self) -> float:
        return self.found / max(self.n_pills, 1)

    @property
    def unknown_rate(self) -> float:
        return self.unknown / max(self.found, 1)

    @property
    def confident_wrong_rate(self) -> float:
        """Share of all pills named as the wrong drug without abstaining: the one failure
        a pharmacy cannot accept (an "unknown" sends the customer to the pharmacist)."""
        return self.wrong / max(self.n_pills, 1)

    def same_answers(self, other: PipelineScore) -> float:
        """Share of pills given the same answer (name, unknown or missed) in both scores."""
        if len(self.answers) != len(other.answers):
            raise ValueError("scores of different photo sets cannot be compared pill by pill")
        same = sum(a == b for a, b in zip(self.answers, other.answers, strict=True))
        return same / max(len(self.answers), 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_pills": self.n_pills,
            "found": self.found,
            "correct": self.correct,
            "unknown": self.unknown,
            "confidently_wrong": self.wrong,
            "false_positives": self.false_positives,
            "end_to_end_accuracy": self.accuracy,
            "pill_recall": self.recall,
            "unknown_rate": self.unknown_rate,
            "confident_wrong_rate": self.confident_wrong_rate,
            "per_class_accuracy": {
                k: v[0] / max(v[1], 1) for k, v in sorted(self.per_class.items())
            },
        }


def score_pipeline(
    identify: Callable[[str], IdentifyResult],
    images: Sequence[GroundTruthImage],
    iou_threshold: float = 0.5,
) -> PipelineScore:
    """End-to-end pill accuracy: found at IoU >= 0.5 and named right.

    A whole-photo result (no box) counts as found when the photo holds exactly one pill.
    """
    s = PipelineScore()
    for gt in images:
        res = identify(gt.path)
        s.n_pills += len(gt.codes)
        for code in gt.codes:
            s.per_class.setdefault(code, [0, 0])[1] += 1
        boxed = [p for p in res.pills if p.bbox is not None]
        whole = [p for p in res.pills if p.bbox is None]
        pairs: list[tuple[int, int]] = []
        if whole and len(gt.codes) == 1:
            pairs = [(0, 0)]
            pills = whole
        else:
            pills = boxed
            if boxed:
                pred = np.array([p.bbox.as_tuple() for p in boxed if p.bbox], np.float32)
                scores = np.array([p.detection_confidence or 0.0 for p in boxed], np.float32)
                match = match_indices(pred, scores, gt.boxes, iou_threshold)
                pairs = [
                    (int(i), int(match[i]))
                    for i in np.argsort(-scores, kind="stable")
                    if match[i] >= 0
                ]
            s.false_positives += len(boxed) - len(pairs)
        answers = [""] * len(gt.codes)
        for i, j in pairs:
            s.found += 1
            pill = pills[i]
            if pill.label is None:
                s.unknown += 1
                answers[j] = "?"
                continue
            answers[j] = pill.label.code
            if pill.label.code == gt.codes[j]:
                s.correct += 1
                s.per_class[gt.codes[j]][0] += 1
            else:
                s.wrong += 1
        s.answers.extend(answers)
    return s


class TorchRunner:
    """Duck-types ``onnxruntime.InferenceSession.run`` with a torch module (eval, no grad)."""

    def __init__(self, module: Any, *, first_output: bool = False) -> None:
        self.module = module.eval()
        self.first_output = first_output

    def run(self, _names: Any, feeds: dict[str, F32]) -> list[F32]:
        import torch

        (x,) = feeds.values()
        with torch.no_grad():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x)))
        if self.first_output and isinstance(out, (tuple, list)):
            out = out[0]
        return [out.float().numpy()]

    def get_providers(self) -> list[str]:
        return ["torch"]


def with_torch_models(idf: Identifier, classifier: Any, detector: Any | None) -> Identifier:
    """The same Identifier (same preprocessing, router, thresholds) on torch modules."""
    import copy

    twin = copy.copy(idf)
    twin._cls = TorchRunner(classifier)
    if detector is not None:
        twin._det = TorchRunner(detector, first_output=True)
    return twin


def classifier_agreement(torch_logits: F32, onnx_logits: F32) -> dict[str, float]:
    """top-1 agreement and max |logit difference| between two engines on the same inputs."""
    agree = float((torch_logits.argmax(1) == onnx_logits.argmax(1)).mean())
    return {
        "top1_agreement": agree,
        "max_abs_logit_diff": float(np.abs(torch_logits - onnx_logits).max(initial=0.0)),
        "n": float(len(torch_logits)),
    }
