"""Package a release: bundle directory + zip, labels with metadata, model card, report.

The bundle is written by :func:`pillsnap_sdk.bundle.writer.write_bundle` (the SDK's own
writer, so hashing can never drift from the verifier) and then loaded back through
:class:`pillsnap_sdk.Identifier` before the release is called done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pillsnap_sdk.bundle.manifest import LabelEntry, LabelsFile
from pillsnap_sdk.bundle.writer import write_bundle, zip_bundle

from .data.records import ClassInfo

__all__ = ["labels_file", "package_bundle", "render_model_card"]


def labels_file(classes: list[ClassInfo]) -> LabelsFile:
    return LabelsFile(
        classes=[
            LabelEntry(
                index=i,
                code=c.code,
                name=c.name,
                metadata={k: str(v) for k, v in sorted(dict(c.metadata).items())},
            )
            for i, c in enumerate(classes)
        ]
    )


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f} %"


def _num(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(float(v), fmt)


def _other_drug_lines(od: dict[str, Any] | None) -> list[str]:
    """The detector-only validation photos' pills (other drugs) named as one of ours."""
    if not od:
        return []
    return [
        f"Pills of **other drugs** (the detector-only validation photos, {od['n_pills']} "
        f"pills; none is one of this bundle's drugs): {od['found']} found, "
        f"**{od['confidently_wrong']} named as one of this bundle's drugs** "
        f"({_pct(od['named_rate'])} of those found), {od['unknown']} unknown. Not a gate: "
        "the bundle never saw these drugs; check unfamiliar pills by hand.",
        "",
    ]


def _precision_lines(dp: dict[str, Any] | None, par: dict[str, Any]) -> list[str]:
    """Which classifier the end-to-end rows measured, when it is not the fp32 export."""
    if not dp or dp.get("served", "fp32") == "fp32":
        return []
    ref = par.get("pipeline", {}).get("onnx_accuracy")
    return [
        f"The bundle serves its **{dp['served']}** classifier by default: the end-to-end "
        f"rows above, the robustness rows and the latency gate measured it. The fp32 "
        f'classifier ships beside it (`precision="fp32"`, `pillsnap identify --precision '
        f"fp32`); its end-to-end accuracy on the same photos: {_pct(ref)}.",
        "",
    ]


def render_model_card(report: dict[str, Any]) -> str:
    """Markdown model card from the release report: every number is a measured one."""
    r = report
    cls, det, cal = r.get("classifier", {}), r.get("detector", {}), r.get("calibration", {})
    par, e2e, lat = r.get("parity", {}), r.get("end_to_end", {}), r.get("latency", {})
    lines = [
        f"# {r['name']} {r['version']}",
        "",
        r.get("description", "").strip() or "Pill identification bundle for pillsnap_sdk.",
        "",
        f"- Created: {r.get('created_at', '')}; pillsnap {r.get('code_version', '')}",
        f"- Trained on: {r.get('trained_on', 'CPU')}",
        f"- Rebuild: `{r.get('command', '')}`",
        "",
        "## Data and credits",
        "",
    ]
    for c in r.get("credits", []):
        lines.append(
            f"- **{c['name']}** ({c['licence']}): {c['source']}. {c.get('attribution', '')}"
        )
    d = r.get("data", {})
    lines += [
        "",
        f"Images: {d.get('images', {})}; boxes: {d.get('boxes', {})}; classes: "
        f"{d.get('n_classes', '?')}. Splits are grouped by source photo (never by file). "
        f"Skipped items: {d.get('skipped', 0)}. Dataset sha256: `{d.get('dataset_sha256', '')}`.",
        "",
        *_licence_lines(bool(det)),
        "## Metrics (validation split, grouped by photo)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| classifier top-1 (crops, ONNX) | {_pct(cls.get('val_top1'))} |",
        f"| classifier top-5 (crops, ONNX) | {_pct(cls.get('val_top5'))} |",
        f"| detector AP@0.5 | {_num(det.get('ap50'))} |",
        f"| detector F1 at chosen threshold | {_num(det.get('f1'))} |",
        f"| end-to-end pill accuracy (IoU >= 0.5 and named right) | "
        f"{_pct(e2e.get('end_to_end_accuracy'))} |",
        f"| pill recall (found at IoU >= 0.5) | {_pct(e2e.get('pill_recall'))} |",
        f"| unknown rate (found pills reported unknown) | {_pct(e2e.get('unknown_rate'))} |",
        f"| **confidently wrong** (pills named as another drug, status identified) | "
        f"{_pct(e2e.get('confident_wrong_rate'))} ({e2e.get('confidently_wrong', '?')} of "
        f"{e2e.get('n_pills', '?')}) |",
        f"| false boxes (no pill under them) | {e2e.get('false_positives', '?')} |",
        "",
        *_other_drug_lines(r.get("other_drugs")),
        *_precision_lines(r.get("default_precision"), par),
        "Per-class top-1 on validation crops:",
        "",
        "| class | code | top-1 | n |",
        "|---|---|---|---|",
    ]
    for row in cls.get("per_class", []):
        lines.append(f"| {row['name']} | {row['code']} | {_pct(row['top1'])} | {row['n']} |")
    rob = r.get("robustness", [])
    if rob:
        from .robustness import format_table

        lines += [
            "",
            "## Robustness (validation photos under camera and table shifts)",
            "",
            "Not a gate: how far each single change of camera or light moves the end-to-end",
            "accuracy, and pills of the validation photos laid out on plain light tables",
            "(synthetic, a proxy for set-ups absent from the data). "
            "Re-run: `pillsnap-train robustness --config CONFIG`.",
            "",
            format_table(rob),
        ]
    unk = cal.get("unknown", {})
    lines += [
        "",
        "## Calibration",
        "",
        f"- Temperature: {_num(cal.get('temperature'))} (ECE {_num(cal.get('ece_before'))} -> "
        f"{_num(cal.get('ece_after'))} on validation)",
        f"- Unknown threshold: {_num(unk.get('threshold'))}: known-accept "
        f"{_pct(unk.get('known_accept_rate'))}, accuracy of accepted "
        f"{_pct(unk.get('accepted_accuracy'))}, unknown-reject on held-out classes "
        f"{_pct(unk.get('unknown_reject_rate'))} (n={unk.get('n_unknown', 0)})",
        *_abstention_lines(cal.get("abstention")),
        f"- Background crops (no pill) rejected as unknown: {_pct(cal.get('background_reject'))}",
        *(
            [
                "- Pill-free crops next to pills (fingertips, palm creases, edges) rejected as "
                f"unknown: {_pct(cal.get('near_pill_reject'))} (n={cal.get('n_near_pill', 0)})"
            ]
            if cal.get("near_pill_reject") is not None
            else []
        ),
        f"- Detector confidence threshold: {_num(det.get('threshold'))} (max F1 on validation)",
        "",
        "## Parity (torch vs ONNX, validation)",
        "",
        f"- Classifier top-1 agreement {_pct(par.get('classifier', {}).get('top1_agreement'))}, "
        f"max |logit diff| {_num(par.get('classifier', {}).get('max_abs_logit_diff'), '.2e')}",
        f"- Detector boxes matched at IoU >= 0.99: "
        f"{_pct(par.get('detector', {}).get('matched_fraction'))}",
        f"- SDK pipeline accuracy {_pct(par.get('pipeline', {}).get('onnx_accuracy'))} vs torch "
        f"pipeline {_pct(par.get('pipeline', {}).get('torch_accuracy'))}",
        "",
        "## Precision variants",
        "",
        "| precision | top-1 | drop (pt) | latency (ms) | speed-up | size | released | why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in r.get("variants", []):
        lines.append(
            f"| {v['precision']} | {_pct(v['top1'])} | {100 * v['top1_drop']:.2f} | "
            f"{v['latency_ms']:.1f} | {v['speedup']:.2f}x | {v['size_bytes'] / 1e6:.1f} MB | "
            f"{'yes' if v['released'] else 'no'} | {v['reason']} |"
        )
    lines += ["", "## Latency", ""]
    for row in lat.get("rows", []):
        lines.append(f"- {row['profile']} / {row['case']}: {row['status']} — {row['detail']}")
    lines += ["", "## Gates", "", "| gate | status | detail |", "|---|---|---|"]
    for g in r.get("gates", []):
        lines.append(f"| {g['name']} | {g['status']} | {g['detail']} |")
    lines += ["", "## Known limits", ""]
    for lim in r.get("limitations", []):
        lines.append(f"- {lim}")
    return "\n".join(lines) + "\n"


def _licence_lines(has_detector: bool) -> list[str]:
    """What the model files' licences depend on, stated, not interpreted (no legal advice)."""
    lines = [
        "## Licences",
        "",
        "The data licences are above. The classifier was trained with PyTorch (BSD-3-Clause)",
        "and timm (Apache-2.0); the bundle runs with the pillsnap runtime (Apache-2.0) and",
        "onnxruntime (MIT), which load only the ONNX files.",
    ]
    if has_detector:
        lines += [
            "The detector was trained with Ultralytics YOLO, which Ultralytics publishes under",
            "AGPL-3.0 (and sells an Enterprise License as the alternative). Ultralytics' position",
            "is that models trained with its software, and their exports, are covered by",
            "AGPL-3.0 unless an Enterprise License applies; whether that binds trained weights",
            "is not settled. If it does, distributing the detector ONNX file (alone, in a",
            "bundle or in a product) comes with AGPL-3.0 obligations such as offering its",
            "corresponding source. The runtime does not contain or import Ultralytics code.",
            "This states licences; it is not legal advice.",
        ]
    return [*lines, ""]


def _abstention_lines(ab: dict[str, Any] | None) -> list[str]:
    """The two-signal rule's numbers, where the release chose it (1.x bundles: none)."""
    if not ab:
        return []
    ch, clean, sh = ab["chosen_on"], ab["clean_val"], ab["shifted_val"]
    lines = [
        f"- Abstention: identified only when top-1 >= {_num(ch['threshold'])} and top-1 minus "
        f"top-2 >= {_num(ch['margin'])}; chosen to keep confidently-wrong crops <= the "
        f"configured share of {ch['n']} validation crops (clean + camera-shifted + rescaled), "
        f"keeping the most right names.",
        f"- On clean validation crops: {_pct(clean['known_accept_rate'])} named, "
        f"{_pct(clean['right_rate'])} right, {_pct(clean['wrong_rate'])} wrong; on the "
        f"shifted/rescaled crops: {_pct(sh['known_accept_rate'])} named, "
        f"{_pct(sh['right_rate'])} right, {_pct(sh['wrong_rate'])} wrong.",
    ]
    if ab.get("holdout_reject") is not None:
        lines.append(f"- Held-out-class pills rejected as unknown: {_pct(ab['holdout_reject'])}")
    return lines


def package_bundle(
    out_dir: Path,
    *,
    name: str,
    version: str,
    classifier_onnx: Path,
    classifier_spec: dict[str, Any],
    detector_onnx: Path | None,
    detector_spec: dict[str, Any] | None,
    variants: list[tuple[Path, dict[str, Any]]],
    labels: LabelsFile,
    manifest_extra: dict[str, Any],
    report: dict[str, Any],
    zip_path: Path,
) -> tuple[Path, Path]:
    """Write ``out_dir`` (must not exist or be empty) and the same bundle as ``zip_path``."""
    models = {classifier_onnx.name: classifier_onnx.read_bytes()}
    if detector_onnx is not None:
        models[detector_onnx.name] = detector_onnx.read_bytes()
    for path, _ in variants:
        models[path.name] = path.read_bytes()
    write_bundle(
        out_dir,
        name=name,
        version=version,
        classifier={**classifier_spec, "file": classifier_onnx.name},
        detector={**detector_spec, "file": detector_onnx.name}
        if detector_onnx and detector_spec
        else None,
        variants=[{**spec, "file": p.name} for p, spec in variants],
        models=models,
        labels=labels,
        model_card=render_model_card(report),
        extra=manifest_extra,
    )
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    return out_dir, zip_bundle(out_dir, zip_path)


def write_report(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    return path
