"""The candidate bundle's checks and the release gates decided on them.

Checks (numbers for the report): SDK end-to-end accuracy on the validation photos,
robustness rows (informative, no gate), torch-vs-ONNX parity of the classifier, the
detector and the whole pipeline, and latency on the device profiles. Gates (pass / fail /
not run): thresholds from ``cfg.gates`` applied to those numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pillsnap_sdk import Identifier
from pillsnap_sdk.boxes import box_iou
from pillsnap_sdk.image import load_image
from pillsnap_sdk.postprocess import decode_yolo

from ..config import GateConfig
from ..evaluate import TorchRunner, classifier_agreement, score_pipeline, with_torch_models
from .crops import crop_batches
from .data import ReleaseData
from .engines import classifier_logits, detector_stage, load_yolo_module, ort_session
from .export import release_classifier
from .results import ExportResult, TrainClassifierResult, TrainDetectorResult

__all__ = ["ROBUSTNESS_PILES", "ROBUSTNESS_SCENES", "check_bundle", "gates"]

#: Synthetic plain-table scenes in the release report's robustness rows (~1 s each on CPU).
ROBUSTNESS_SCENES = 30
#: Synthetic dense piles (25-40 pills) in the robustness rows.
ROBUSTNESS_PILES = 10


def check_bundle(
    data: ReleaseData,
    bundle: Path,
    classifier: TrainClassifierResult,
    detector: TrainDetectorResult,
    exp: ExportResult,
) -> dict[str, Any]:
    """The report's ``end_to_end``, ``robustness``, ``parity`` and ``latency`` blocks."""
    from ..robustness import evaluate_robustness

    idf = Identifier.from_bundle(bundle)
    val = data.gt_images("val")
    served = idf.manifest.classifier.precision
    score = score_pipeline(lambda p: idf.identify(p), val)
    # Parity compares like with like: torch against the fp32 export, whichever the
    # bundle serves by default (an int8 classifier is gated on its own, in ``variants``).
    ref = idf if served == "fp32" else Identifier.from_bundle(bundle, precision="fp32")
    onnx_score = score if ref is idf else score_pipeline(lambda p: ref.identify(p), val)
    robustness = [
        r.as_dict()
        for r in evaluate_robustness(
            idf,
            val,
            plain_table=ROBUSTNESS_SCENES,
            dense_piles=ROBUSTNESS_PILES,
            seed=data.cfg.seed + 1234,
        )
    ]
    model = release_classifier(data, Path(classifier.best))  # with its gate, as exported
    x, _ = crop_batches(data, "val")
    torch_logits = classifier_logits(TorchRunner(model), x)
    onnx_logits = classifier_logits(ort_session(Path(exp.classifier)), x)
    parity: dict[str, Any] = {"classifier": classifier_agreement(torch_logits, onnx_logits)}
    det_module = None
    if detector.enabled and detector.best and exp.detector:
        det_module = load_yolo_module(Path(detector.best))
        parity["detector"] = _detector_parity(data, det_module, Path(exp.detector), idf)
    torch_idf = with_torch_models(ref, model, det_module)
    torch_score = score_pipeline(lambda p: torch_idf.identify(p), val)
    parity["pipeline"] = {
        "onnx_accuracy": onnx_score.accuracy,
        "torch_accuracy": torch_score.accuracy,
        "delta": abs(onnx_score.accuracy - torch_score.accuracy),
    }
    foreign = data.foreign_images("val")
    return {
        "end_to_end": {**score.as_dict(), "classifier_precision": served},
        "other_drugs": _other_drugs(score_pipeline(lambda p: idf.identify(p), foreign))
        if foreign
        else {},
        "robustness": robustness,
        "parity": parity,
        "latency": _latency(data, bundle),
    }


def _other_drugs(score: Any) -> dict[str, Any]:
    """Pills of other drugs (detector-only validation photos): every one named is named
    wrongly. Informative, like the open-set row: no gate (the bundle cannot learn them)."""
    d = score.as_dict()
    keys = ("n_pills", "found", "unknown", "confidently_wrong", "false_positives")
    return {
        **{k: d[k] for k in keys},
        "named_rate": d["confidently_wrong"] / d["found"] if d["found"] else 0.0,
    }


def _detector_parity(
    data: ReleaseData, module: Any, onnx_path: Path, idf: Identifier
) -> dict[str, Any]:
    """Share of boxes both engines find (network pixels, the bundle's thresholds)."""
    torch_stage = detector_stage(data.cfg, TorchRunner(module, first_output=True))
    onnx_stage = detector_stage(data.cfg, ort_session(onnx_path))
    th = idf.manifest.thresholds
    matched = total = 0
    for gt in data.gt_images("val"):
        rgb = load_image(gt.path)
        a, _ = torch_stage.forward(rgb)
        b, _ = onnx_stage.forward(rgb)
        ba, _ = decode_yolo(a, th.detector_confidence, th.nms_iou, th.max_detections)
        bb, _ = decode_yolo(b, th.detector_confidence, th.nms_iou, th.max_detections)
        total += max(len(ba), len(bb))
        if len(ba) and len(bb):
            iou = box_iou(ba, bb)
            matched += int((iou.max(axis=1) >= data.cfg.gates.min_detector_box_iou).sum())
    return {"matched_fraction": matched / total if total else 1.0, "boxes": total}


def _latency(data: ReleaseData, bundle: Path) -> dict[str, Any]:
    from ..latency import rows_as_dicts, run_latency_gate

    val = data.gt_images("val") or data.gt_images("train")
    if not val:
        return {"rows": []}
    single = min(val, key=lambda g: len(g.codes))
    multi = max(val, key=lambda g: len(g.codes))
    cases = [("single_pill", Path(single.path)), ("multi_pill", Path(multi.path))]
    return {
        "rows": rows_as_dicts(run_latency_gate(bundle, cases, rounds=5)),
        "photos": {"single_pill": single.path, "multi_pill": multi.path},
    }


def gates(g: GateConfig, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every gate's row: ``name``, ``detail``, ``status`` (pass / fail / not run)."""
    par = report["parity"]
    rows: list[dict[str, Any]] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        rows.append(
            {
                "name": name,
                "detail": detail,
                "status": "not run" if ok is None else ("pass" if ok else "fail"),
            }
        )

    agree = par["classifier"]["top1_agreement"]
    add(
        "classifier parity",
        agree >= g.min_top1_agreement,
        f"top-1 agreement {agree:.4f} (>= {g.min_top1_agreement}), max abs logit diff "
        f"{par['classifier']['max_abs_logit_diff']:.2e}",
    )
    if "detector" in par:
        frac = par["detector"]["matched_fraction"]
        add(
            "detector parity",
            frac >= g.detector_matched_fraction,
            f"{frac:.4f} of boxes matched at IoU >= {g.min_detector_box_iou}",
        )
    delta = par["pipeline"]["delta"]
    add(
        "pipeline parity",
        delta <= g.max_pipeline_accuracy_delta,
        f"SDK {par['pipeline']['onnx_accuracy']:.4f} vs torch "
        f"{par['pipeline']['torch_accuracy']:.4f} (|delta| <= "
        f"{g.max_pipeline_accuracy_delta})",
    )
    dp = report.get("default_precision")
    if dp and dp["requested"] != "fp32":
        add(
            "default precision",
            dp["served"] == dp["requested"],
            f"serves the {dp['served']} classifier (asked: {dp['requested']}"
            + ("" if dp["served"] == dp["requested"] else "; its variant failed its gate")
            + ")",
        )
    top1 = report["classifier"]["val_top1"]
    add(
        "classifier accuracy",
        top1 >= g.min_val_top1,
        f"val top-1 {top1:.4f} (>= {g.min_val_top1})",
    )
    e2e = report["end_to_end"]
    add(
        "confidently wrong",
        e2e["confident_wrong_rate"] <= g.max_confident_wrong_rate,
        f"{e2e['confidently_wrong']} of {e2e['n_pills']} val pills "
        f"({100 * e2e['confident_wrong_rate']:.2f} %) named wrongly as identified "
        f"(<= {100 * g.max_confident_wrong_rate:.2f} %)",
    )
    for row in report["latency"].get("rows", []):
        status = row["status"]
        add(
            f"latency {row['profile']}/{row['case']}",
            None if status == "not run" else status == "pass",
            row["detail"],
        )
    return rows
