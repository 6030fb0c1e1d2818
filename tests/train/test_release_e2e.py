"""End to end: AIHub + YOLO photos -> ``pillsnap-train release`` -> bundle -> ``identify``.

One release runs per session (``release_run`` in conftest: the CLI entry, no network). The
tests here check what it produced: a verifying bundle (directory and zip), labels with
K-codes and metadata, a model card and report with measured numbers and gate verdicts, a
classifier well above chance, and an SDK that names pills from those labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pillsnap_sdk import Candidate, Identifier, IdentifyResult, PillResult
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_train.data.fixtures import fixture_class
from pillsnap_train.data.records import group_by_image, read_records

from .conftest import AIHUB_CLASSES, YOLO_CLASSES, ReleaseRun

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_network")]

N_CLASSES = AIHUB_CLASSES + YOLO_CLASSES
CHANCE = 1.0 / N_CLASSES
GATE_STATUSES = {"pass", "fail", "not run"}


@pytest.fixture(scope="module")
def run(release_run: ReleaseRun) -> ReleaseRun:
    if release_run.rc != 0:
        lines = release_run.stderr.replace("\r", "\n").splitlines()
        why = [ln for ln in lines if "BLOCKED" in ln or "Error" in ln] or lines[-20:]
        pytest.fail(f"pillsnap-train release exited {release_run.rc}:\n" + "\n".join(why))
    return release_run


@pytest.fixture(scope="module")
def bundle_dir(run: ReleaseRun) -> Path:
    return Path(run.step("package")["published"])


@pytest.fixture(scope="module")
def zip_path(run: ReleaseRun) -> Path:
    return Path(run.step("package")["zip"])


@pytest.fixture(scope="module")
def report(run: ReleaseRun) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(run.step("package")["report"]).read_text())
    return data


@pytest.fixture(scope="module")
def val_photos(run: ReleaseRun) -> dict[str, list[str]]:
    """Validation photos -> their pills' class codes."""
    recs = [r for r in read_records(run.work / "data" / "records.csv") if r.split == "val"]
    return {p: [b.class_code for b in boxes] for p, boxes in group_by_image(recs).items()}


def test_release_ran_every_step_without_network(run: ReleaseRun) -> None:
    assert run.network_attempts == []
    for step in (
        "ingest",
        "train-classifier",
        "train-detector",
        "export",
        "calibrate",
        "variants",
        "package",
    ):
        assert (run.work / "steps" / f"{step}.json").is_file(), step
    assert "== summary ==" in run.stdout
    assert "gate classifier parity" in run.stdout
    # The overall estimate precedes each step that runs: first on reference times, then
    # scaled by this run's pace.
    assert "overall: step 1/7 (ingest);" in run.stdout
    assert "overall: step 7/7 (package);" in run.stdout and "(this run's pace)" in run.stdout
    print(f"pillsnap-train release took {run.seconds:.1f} s:")
    for step in (
        "ingest",
        "train-classifier",
        "train-detector",
        "export",
        "calibrate",
        "variants",
        "package",
    ):
        print(f"  {step:<17} {run.step(step)['seconds']:>6} s")


def test_ingest_read_both_sources_and_reported_planted_defects(run: ReleaseRun) -> None:
    ingest = run.step("ingest")
    assert ingest["records"] == str(run.work / "data" / "records.csv")
    recs = read_records(run.work / "data" / "records.csv")
    assert {r.source for r in recs} == {"aihub", "yolo"}
    assert {r.split for r in recs} >= {"train", "val"}
    # Both fixtures plant a corrupt image, an orphan label, ...: reported, not fatal.
    assert ingest["skipped"] >= 4, ingest["skipped_counts"]


def test_bundle_verifies_as_directory_and_zip(
    bundle_dir: Path, zip_path: Path, run: ReleaseRun
) -> None:
    assert bundle_dir == run.out / run.config["name"]
    a, b = load_bundle(bundle_dir), load_bundle(zip_path)
    assert a.manifest == b.manifest
    assert a.files == b.files
    m = a.manifest
    assert (m.name, m.version) == (run.config["name"], run.config["version"])
    assert m.classifier.file in a.files
    assert m.classifier.input_shape[1:] == [3, 64, 64]
    assert "MODEL_CARD.md" in a.files
    # The thresholds are the calibrated ones, not defaults.
    cal = run.step("calibrate")
    assert m.thresholds.temperature == pytest.approx(cal["temperature"])
    assert m.thresholds.unknown_threshold == pytest.approx(cal["unknown"]["threshold"])
    assert m.provenance.dataset_sha256 == run.step("ingest")["dataset_sha256"]
    assert m.provenance.training_config["classifier"]["img_size"] == 64
    assert [c.name for c in m.data] == [c["name"] for c in run.config["data"]["credits"]]


def test_labels_carry_kcodes_names_and_metadata(bundle_dir: Path) -> None:
    labels = json.loads((bundle_dir / "labels.json").read_text(encoding="utf-8"))["classes"]
    assert [c["index"] for c in labels] == list(range(N_CLASSES))
    by_code = {c["code"]: c for c in labels}
    for i in range(AIHUB_CLASSES):
        code, colour, shape = fixture_class(i)
        entry = by_code[code]
        assert code.startswith("K-")
        # The AIHub product name (dl_name), not the code, and its metadata.
        assert entry["name"].endswith(f"{i}mg") and entry["name"] != code
        meta = entry["metadata"]
        assert meta["manufacturer"] == f"제약회사{i % 3}(주)"
        assert meta["name_en"] == f"{colour.title()} {shape.title()} Tab. {i}mg"
        assert meta["shape"] and meta["colour"] and meta["print_front"] == f"P{i}"
    for i in range(AIHUB_CLASSES, N_CLASSES):
        _, colour, shape = fixture_class(i)
        assert by_code[f"{colour}-{shape}"]["name"] == f"{colour}-{shape}"


def test_classifier_clearly_above_chance(run: ReleaseRun, report: dict[str, Any]) -> None:
    train = run.step("train-classifier")
    top1 = report["classifier"]["val_top1"]  # ONNX, validation crops
    print(f"val top-1 {top1:.3f} (torch best {train['best_val_top1']:.3f}; chance {CHANCE:.3f})")
    assert train["best_val_top1"] >= 0.6
    assert top1 >= 0.6, report["classifier"]["per_class"]
    assert report["classifier"]["val_top5"] >= top1
    history = train["history"]
    assert len(history) == run.config["classifier"]["epochs"]
    # A fresh head predicts uniformly: the first epoch's loss starts near ln(7), not above
    # (plus the pill-free crops' cross-entropy to uniform, 0.5 ln(7), when a batch has any).
    assert train["negatives"] > 0
    assert history[0]["train_loss"] < 1.5 * np.log(N_CLASSES) + 0.3
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_report_gates_are_all_present_with_verdicts(report: dict[str, Any]) -> None:
    import onnxruntime as ort

    gates = {g["name"]: g for g in report["gates"]}
    assert all(g["status"] in GATE_STATUSES and g["detail"] for g in gates.values())
    for name in ("classifier parity", "pipeline parity", "classifier accuracy"):
        assert gates[name]["status"] == "pass", gates[name]
    assert gates["detector parity"]["status"] in GATE_STATUSES
    assert not [g for g in gates.values() if g["status"] == "fail"]
    latency = [g for n, g in gates.items() if n.startswith("latency ")]
    assert latency, "no latency gate rows"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        # A missing device is never a pass.
        cuda = [g for g in latency if "CUDA" in g["detail"]]
        assert cuda and all(g["status"] == "not run" for g in cuda)
    parity = report["parity"]["classifier"]
    assert parity["top1_agreement"] == 1.0
    assert parity["max_abs_logit_diff"] < 1e-3
    variants = {v["precision"]: v for v in report["variants"]}
    assert set(variants) == {"fp16", "int8"}
    assert all(isinstance(v["released"], bool) and v["reason"] for v in variants.values())


def test_model_card_has_credits_and_measured_numbers(
    bundle_dir: Path, report: dict[str, Any], run: ReleaseRun
) -> None:
    card = (bundle_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert card.startswith(f"# {run.config['name']} {run.config['version']}")
    for credit in run.config["data"]["credits"]:
        assert credit["name"] in card and credit["licence"] in card
        assert credit["source"] in card
    top1 = report["classifier"]["val_top1"]
    assert f"| classifier top-1 (crops, ONNX) | {100 * top1:.1f} % |" in card
    assert f"Temperature: {report['calibration']['temperature']:.3f}" in card
    e2e = report["end_to_end"]["end_to_end_accuracy"]
    assert f"{100 * e2e:.1f} %" in card
    for g in report["gates"]:
        assert f"| {g['name']} | {g['status']} |" in card
    assert run.config["limitations"][0] in card
    assert "fp16" in card and "int8" in card
    # Robustness rows: the unshifted row is the end-to-end number, every shift is in the card.
    rows = {row["condition"]: row for row in report["robustness"]}
    assert rows["none"]["correct"] == report["end_to_end"]["correct"]
    assert "## Robustness" in card and "plain-table" in rows
    assert {"upscaled-12mp", "dense-pile"} <= set(rows)
    assert rows["upscaled-12mp"]["same_answers"] is not None
    for name in rows:
        assert f"| {name} | " in card
    assert "**confidently wrong**" in card and "Abstention: identified only when" in card
    # pill-free crops next to the validation pills (where false boxes fall) are measured
    cal = run.step("calibrate")
    assert cal["n_near_pill"] > 0 and 0.0 <= cal["near_pill_reject"] <= 1.0
    assert f"edges) rejected as unknown: {100 * cal['near_pill_reject']:.1f} %" in card


def test_confidently_wrong_is_measured_bounded_and_gated(
    run: ReleaseRun, report: dict[str, Any], bundle_dir: Path
) -> None:
    e2e = report["end_to_end"]
    assert e2e["confidently_wrong"] + e2e["correct"] + e2e["unknown"] == e2e["found"]
    assert e2e["confident_wrong_rate"] == pytest.approx(e2e["confidently_wrong"] / e2e["n_pills"])
    gate = next(g for g in report["gates"] if g["name"] == "confidently wrong")
    assert gate["status"] == "pass" and f"{e2e['confidently_wrong']} of" in gate["detail"]
    ab = report["calibration"]["abstention"]
    assert ab["chosen_on"]["wrong_rate"] <= 0.05 + 1e-9
    # Chosen on clean + shifted + rescaled crops: more crops than the clean ones alone.
    assert ab["chosen_on"]["n"] > ab["clean_val"]["n"] > 0
    th = load_bundle(bundle_dir).manifest.thresholds
    assert th.unknown_threshold == report["thresholds"]["unknown_threshold"]
    assert th.unknown_margin == report["thresholds"]["unknown_margin"]
    assert load_bundle(bundle_dir).manifest.min_sdk_version == "0.3.0"


def test_detector_only_source_trains_the_detector_not_the_classifier(
    run: ReleaseRun, bundle_dir: Path
) -> None:
    ingest = run.step("ingest")
    assert ingest["detector_extra"]["images"] > 0
    extra = read_records(Path(ingest["detector_extra"]["records"]))
    extra_codes = {r.class_code for r in extra}
    labels = json.loads((bundle_dir / "labels.json").read_text(encoding="utf-8"))["classes"]
    assert len(labels) == N_CLASSES and not extra_codes & {c["code"] for c in labels}
    info = json.loads((run.work / "detector" / "dataset" / "dataset_info.json").read_text())
    train_extra = {Path(r.image_path).stem for r in extra if r.split == "train"}
    written = {p.stem for p in (run.work / "detector" / "dataset" / "train" / "images").iterdir()}
    assert train_extra <= written
    assert info["synthetic"]["pile_scenes"] == 2
    assert any(p.startswith("pile_") for p in written)


def test_other_drugs_are_scored_on_the_detector_only_val_photos(
    run: ReleaseRun, report: dict[str, Any], bundle_dir: Path
) -> None:
    """Every pill of a detector-only validation photo is another drug: the report counts
    how many the bundle names anyway (each a wrong name), and the model card says it."""
    extra = read_records(Path(run.step("ingest")["detector_extra"]["records"]))
    n_val = sum(1 for r in extra if r.split == "val")
    assert n_val > 0, "the fixture's detector-only source has no validation photos"
    od = report["other_drugs"]
    assert od["n_pills"] == n_val
    assert od["found"] == od["unknown"] + od["confidently_wrong"] <= n_val
    assert od["named_rate"] == (od["confidently_wrong"] / od["found"] if od["found"] else 0.0)
    card = (bundle_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"{od['confidently_wrong']} named as one of this bundle's drugs" in card


def _check_result(
    res: IdentifyResult, labels: dict[str, dict[str, Any]], run: ReleaseRun
) -> PillResult:
    assert isinstance(res, IdentifyResult)
    assert (res.bundle.name, res.bundle.version) == (run.config["name"], run.config["version"])
    assert res.pills, "no pill reported"
    for pill in res.pills:
        assert isinstance(pill, PillResult)
        assert pill.status in ("identified", "unknown")
        assert 1 <= len(pill.candidates) <= 5
        confs = [c.confidence for c in pill.candidates]
        assert confs == sorted(confs, reverse=True)
        for c in pill.candidates:
            assert isinstance(c, Candidate)
            entry = labels[c.code]
            assert (c.class_index, c.name) == (entry["index"], entry["name"])
            assert c.metadata == entry["metadata"]
    return res.pills[0]


def test_identify_from_dir_and_zip_names_pills_from_labels(
    bundle_dir: Path, zip_path: Path, val_photos: dict[str, list[str]], run: ReleaseRun
) -> None:
    labels = {
        c["code"]: c
        for c in json.loads((bundle_dir / "labels.json").read_text(encoding="utf-8"))["classes"]
    }
    from_dir, from_zip = Identifier.from_bundle(bundle_dir), Identifier.from_bundle(zip_path)
    assert from_dir.has_detector
    singles = sorted((p, codes[0]) for p, codes in val_photos.items() if len(codes) == 1)
    assert len(singles) >= 5
    hits = 0
    for path, code in singles:
        # mode="single": the classifier on the whole photo, whatever a one-epoch test
        # detector finds; "auto" (the default) is checked for types and agreement too.
        a, b = from_dir.identify(path, mode="single"), from_zip.identify(path, mode="single")
        pill = _check_result(a, labels, run)
        _check_result(b, labels, run)
        _check_result(from_zip.identify(path), labels, run)
        # The zip and the directory are the same bundle: same answers.
        assert [c.code for p in a.pills for c in p.candidates] == [
            c.code for p in b.pills for c in p.candidates
        ]
        np.testing.assert_allclose(
            [c.confidence for p in a.pills for c in p.candidates],
            [c.confidence for p in b.pills for c in p.candidates],
            atol=1e-6,
        )
        assert pill.bbox is None and a.mode_used == "single"
        hits += int(pill.label is not None and pill.label.code == code)
    accuracy = hits / len(singles)
    print(f"identify: {hits}/{len(singles)} single-pill validation photos named right")
    assert accuracy >= 0.5


# --------------------------------------------------------------------------- detector
# Runs only once pillsnap_train.detector exists (conftest.TINY_DETECTOR: 64 px, 1 epoch).
# A one-epoch detector finds little; this checks the plumbing, not its accuracy.


def test_detector_is_trained_exported_calibrated_and_packaged(
    run: ReleaseRun, bundle_dir: Path, report: dict[str, Any], val_photos: dict[str, list[str]]
) -> None:
    det = run.step("train-detector")
    assert det["enabled"] is True and Path(det["best"]).is_file()
    # The second (fine-tune) stage ran and its weights are the ones exported.
    assert Path(det["best"]).parts[-3] == "finetune"
    # photometric_fraction 0.5: some real train photos went in camera-shifted, none of val.
    ds = run.work / "detector" / "dataset"
    info = json.loads((ds / "dataset_info.json").read_text())
    assert 0 < info["train_photometric_shifted"] <= info["train_images"]
    assert all(p.is_symlink() for p in (ds / "val" / "images").iterdir())
    assert "detector" in run.step("export")
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest.detector is not None
    assert bundle.manifest.detector.input_shape == [1, 3, 64, 64]
    assert bundle.manifest.detector.file in bundle.files
    cal = report["calibration"]["detector"]
    assert 0.0 <= cal["ap50"] <= 1.0 and 0.0 < cal["threshold"] <= 1.0
    assert bundle.manifest.thresholds.detector_confidence == pytest.approx(cal["threshold"])
    assert "detector" in report["parity"]
    idf = Identifier.from_bundle(bundle_dir)
    assert idf.has_detector
    for path in sorted(val_photos)[:3]:
        res = idf.identify(path)  # auto: detector first, whole photo only if it finds nothing
        boxed = all(p.bbox is not None for p in res.pills)
        assert boxed or "no_pill_detected" in res.warnings, res
