"""Release gates that must say no: a broken export, a variant that loses accuracy, a changed
config on a used work dir; and resume, which must not redo finished steps.

Runs on a copy of the session's tiny release (``release_run``): the trained classifier's
checkpoints are copied into a fresh work dir, where training *resumes* at its last epoch
(nothing to do), so these tests pay for export/calibrate only, not for training.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from pillsnap_train.cli import main
from pillsnap_train.config import ReleaseConfig, load_config
from pillsnap_train.export.variants import gate_variant, make_fp16
from pillsnap_train.release import STEPS, GateFailure, Release, run_release

from .conftest import (
    NetworkGuard,
    ReleaseRun,
    relaxed_latency_targets,
    release_config,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_network")]


@pytest.fixture(scope="module", autouse=True)
def _shared_machine() -> Iterator[None]:
    """Relaxed latency targets and one torch thread (see conftest): the package step runs
    torch for its parity checks, and 2 OpenMP threads on 2 busy cores crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with relaxed_latency_targets():
            yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class GateWork:
    config_path: Path
    cfg: ReleaseConfig
    work: Path
    out: Path
    n_classes: int

    @property
    def onnx_path(self) -> Path:
        return self.work / "export" / "classifier.onnx"


@pytest.fixture(scope="module")
def gate_work(release_run: ReleaseRun, tmp_path_factory: pytest.TempPathFactory) -> GateWork:
    # Only the trained classifier is reused: these tests do not depend on the e2e release
    # passing its gates.
    if not (release_run.work / "steps" / "train-classifier.json").is_file():
        pytest.fail("the session release run did not train a classifier; see the e2e tests")
    root = tmp_path_factory.mktemp("gates")
    cfg = release_config(
        root, aihub=release_run.aihub, yolo=release_run.yolo, detector=False, variants=[]
    )
    path = write_config(root / "gates.yaml", cfg)
    rc = load_config(path)
    shutil.copytree(release_run.work / "classifier", Path(rc.work_dir) / "classifier")
    guard = NetworkGuard()
    with guard.installed():
        results = run_release(rc, until="variants")
    assert guard.attempts == []
    train = results["train-classifier"]
    assert len(train["history"]) == cfg["classifier"]["epochs"]  # resumed, not retrained
    n = len(Release(rc).classes())
    return GateWork(path, rc, Path(rc.work_dir), Path(rc.output_dir), n)


@pytest.fixture(autouse=True)
def _restore_work(gate_work: GateWork) -> Iterator[None]:
    """Put the shared work dir back after every test, pass or fail: step markers, the config
    hash, and no published bundle. The tests share one module-scoped work dir, so a test
    that fails half-way must not change what the next one sees."""
    steps = gate_work.work / "steps"
    sha = gate_work.work / "config.sha256"
    dest = gate_work.out / gate_work.cfg.name
    markers = {p.name: p.read_bytes() for p in steps.iterdir() if p.is_file()}
    sha_bytes, published = sha.read_bytes(), dest.exists()
    yield
    for p in steps.iterdir():
        if p.is_file() and p.name not in markers:
            p.unlink()
    for name, data in markers.items():
        if not (steps / name).is_file() or (steps / name).read_bytes() != data:
            (steps / name).write_bytes(data)
    sha.write_bytes(sha_bytes)
    if dest.exists() and not published:
        shutil.rmtree(dest)


def _roll_classes(src: Path, dst: Path, n_classes: int) -> Path:
    """Same network, classes shifted by one in the last layer: every top-1 changes."""
    model = onnx.load(str(src))
    g = model.graph
    producer = {o: node for node in g.node for o in node.output}
    inits = {i.name: i for i in g.initializer}
    node = producer[g.output[0].name]
    names = [x for x in node.input if x in inits]
    if node.op_type == "Add":  # MatMul + Add instead of Gemm
        names += [x for n in node.input if n in producer for x in producer[n].input if x in inits]
    rolled = 0
    for name in names:
        arr = numpy_helper.to_array(inits[name])
        axes = [a for a, d in enumerate(arr.shape) if d == n_classes]
        if axes:
            inits[name].CopyFrom(numpy_helper.from_array(np.roll(arr, 1, axis=axes[0]), name))
            rolled += 1
    assert rolled, f"no class-sized weights found feeding {node.op_type}"
    onnx.save(model, str(dst))
    return dst


@contextlib.contextmanager
def _restored(path: Path) -> Iterator[bytes]:
    original = path.read_bytes()
    try:
        yield original
    finally:
        path.write_bytes(original)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- (a) parity


def test_broken_export_fails_parity_and_publishes_nothing(gate_work: GateWork) -> None:
    dest = gate_work.out / gate_work.cfg.name
    with _restored(gate_work.onnx_path):
        _roll_classes(gate_work.onnx_path, gate_work.onnx_path, gate_work.n_classes)
        with pytest.raises(GateFailure, match="classifier parity") as exc:
            run_release(gate_work.cfg, until="package")
        assert "pipeline parity" in str(exc.value)
        assert not dest.exists(), "a bundle that failed a gate was published"
        assert not (gate_work.work / "steps" / "package.json").exists()
        report = json.loads((gate_work.work / "bundle" / "report.json").read_text())
        gates = {g["name"]: g for g in report["gates"]}
        assert gates["classifier parity"]["status"] == "fail"
        assert report["parity"]["classifier"]["top1_agreement"] < 0.5
        assert gates["classifier accuracy"]["status"] == "pass"  # calibrated on the good one

        rc, _, err = _cli("package", "--config", str(gate_work.config_path))
        assert rc == 1
        assert "RELEASE BLOCKED" in err and "parity" in err
        assert not dest.exists()

    # Control: the same work dir with the intact export releases (``_restore_work`` then
    # unpublishes it and drops the package step's marker).
    res = run_release(gate_work.cfg, until="package")
    assert Path(res["package"]["published"]) == dest and (dest / "manifest.json").is_file()


# --------------------------------------------------------------------------- (b) variants


@pytest.fixture(scope="module")
def val_batches(gate_work: GateWork) -> list[tuple[Any, Any]]:
    x, y = Release(gate_work.cfg)._crop_batches("val")
    assert len(y) >= 10
    return [(x, y)]


def test_variant_that_loses_accuracy_is_not_released(
    gate_work: GateWork, val_batches: list[tuple[Any, Any]], tmp_path: Path
) -> None:
    fp32 = gate_work.onnx_path
    bad = _roll_classes(fp32, tmp_path / "classifier_int8.onnx", gate_work.n_classes)
    x = val_batches[0][0]
    rep = gate_variant("int8", bad, fp32, "input", val_batches, x[:8], rounds=2, max_top1_drop=0.01)
    assert rep.released is False
    assert rep.top1_drop > 0.5
    assert "top-1 drops" in rep.reason


def test_variant_that_keeps_accuracy_and_is_smaller_is_released(
    gate_work: GateWork, val_batches: list[tuple[Any, Any]], tmp_path: Path
) -> None:
    fp32 = gate_work.onnx_path
    half = make_fp16(fp32, tmp_path / "classifier_fp16.onnx")
    x = val_batches[0][0]
    rep = gate_variant(
        "fp16", half, fp32, "input", val_batches, x[:8], rounds=2, max_top1_drop=0.01
    )
    assert rep.released is True, rep.reason
    assert rep.top1_drop <= 0.01
    assert rep.size_ratio < 0.6


def test_variant_gate_decides_on_the_measured_drop(gate_work: GateWork, tmp_path: Path) -> None:
    """The accuracy rule alone (evaluate hook), on both sides of ``max_top1_drop``."""
    fp32 = gate_work.onnx_path
    half = make_fp16(fp32, tmp_path / "classifier_fp16.onnx")
    batch = np.zeros((1, 3, 64, 64), np.float32)

    def scores(var_top1: float) -> Any:
        return lambda p: 0.90 if p == fp32 else var_top1

    ok = gate_variant(
        "fp16", half, fp32, "input", [], batch, rounds=1, max_top1_drop=0.01, evaluate=scores(0.895)
    )
    bad = gate_variant(
        "fp16", half, fp32, "input", [], batch, rounds=1, max_top1_drop=0.01, evaluate=scores(0.88)
    )
    assert ok.released and ok.top1_drop == pytest.approx(0.005)
    assert not bad.released and "2.00 points" in bad.reason
    assert "top-1 -0.50 pt" in ok.reason
    up = gate_variant(
        "fp16", half, fp32, "input", [], batch, rounds=1, max_top1_drop=0.01, evaluate=scores(0.92)
    )
    assert up.released and "top-1 +2.00 pt" in up.reason  # not "--2.00"


# --------------------------------------------------------------------------- (c) resume


def test_resume_skips_finished_steps(
    gate_work: GateWork, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    markers = {
        s: (gate_work.work / "steps" / f"{s}.json").read_text()
        for s in STEPS[: STEPS.index("variants") + 1]
    }

    def must_not_run(self: Release) -> dict[str, Any]:
        raise AssertionError("a finished step ran again")

    for method in (
        "ingest",
        "train_classifier",
        "train_detector",
        "export",
        "calibrate",
        "variants",
    ):
        monkeypatch.setattr(Release, method, must_not_run)
    results = run_release(gate_work.cfg, until="variants")
    assert list(results) == list(markers)
    for step, text in markers.items():
        assert results[step] == json.loads(text)
        assert (gate_work.work / "steps" / f"{step}.json").read_text() == text
    assert capsys.readouterr().out.count("done earlier, skipping") == len(markers)

    # --redo one step: only that step runs again.
    calls: list[str] = []

    def calibrate_again(self: Release) -> dict[str, Any]:
        calls.append("calibrate")
        return {"redone": True}

    monkeypatch.setattr(Release, "calibrate", calibrate_again)
    results = run_release(gate_work.cfg, until="calibrate", force_steps=("calibrate",))
    assert calls == ["calibrate"] and results["calibrate"]["redone"] is True
    # (``_restore_work`` puts the real calibrate marker back.)


def test_changed_config_on_same_work_dir_is_refused(gate_work: GateWork, tmp_path: Path) -> None:
    sha = gate_work.work / "config.sha256"
    before = sha.read_text()
    changed = gate_work.cfg.model_copy(update={"seed": 1})
    with pytest.raises(GateFailure, match="different config"):
        run_release(changed, until="ingest")
    assert sha.read_text() == before

    raw = json.loads(gate_work.cfg.model_dump_json())
    raw["classifier"]["epochs"] += 1
    path = write_config(tmp_path / "changed.yaml", raw)
    rc, _, err = _cli("ingest", "--config", str(path))
    assert rc == 1 and "different config" in err
    assert sha.read_text() == before

    # The same config is accepted again (resume), and the explicit override works
    # (``_restore_work`` restores the hash).
    run_release(gate_work.cfg, until="ingest")
    run_release(changed, until="ingest", allow_config_change=True)
    assert sha.read_text() != before


def test_unset_detector_fraction_keeps_old_config_hashes() -> None:
    from pillsnap_train.config import GateConfig

    assert "min_detector_matched_fraction" not in GateConfig().model_dump_json()
    assert GateConfig(min_detector_matched_fraction=0.9).model_dump()[
        "min_detector_matched_fraction"
    ] == pytest.approx(0.9)


# --------------------------------------------------------------------------- (d) int8 served


def test_int8_default_precision_serves_int8_and_keeps_fp32_beside_it(
    release_run: ReleaseRun, tmp_path: Path
) -> None:
    """``export.default_precision: int8``: the gated int8 variant becomes the bundle's
    classifier, fp32 a variant; the end-to-end numbers are the int8 classifier's and the
    pipeline parity gate still compares torch with the fp32 export."""
    from pillsnap_sdk import Identifier

    raw = release_config(
        tmp_path, aihub=release_run.aihub, yolo=release_run.yolo, detector=False, variants=["int8"]
    )
    raw["export"]["default_precision"] = "int8"
    raw["gates"]["max_variant_top1_drop"] = 1.0  # a tiny model: the gate is tested above
    rc = load_config(write_config(tmp_path / "int8.yaml", raw))
    assert '"default_precision":"int8"' in rc.model_dump_json()
    shutil.copytree(release_run.work / "classifier", Path(rc.work_dir) / "classifier")
    res = run_release(rc, until="package")
    dest = Path(res["package"]["published"])
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["classifier"]["precision"] == "int8"
    assert manifest["classifier"]["file"] == "classifier_int8.onnx"
    [ref] = [v for v in manifest["variants"] if v["role"] == "classifier"]
    assert ref["precision"] == "fp32" and ref["file"] == "classifier.onnx"
    assert ref["metrics"]["top1_drop"] == 0.0 and ref["metrics"]["speedup"] == 1.0
    report = json.loads((Path(rc.work_dir) / "bundle" / "report.json").read_text())
    assert report["end_to_end"]["classifier_precision"] == "int8"
    assert report["default_precision"] == {"requested": "int8", "served": "int8"}
    gates = {g["name"]: g["status"] for g in report["gates"]}
    assert gates["default precision"] == "pass" and gates["pipeline parity"] == "pass"
    card = (dest / "MODEL_CARD.md").read_text()
    assert "serves its **int8** classifier by default" in card
    idf = Identifier.from_bundle(dest)
    fp32 = Identifier.from_bundle(dest, precision="fp32")
    assert idf.manifest.classifier.precision == "int8"
    assert fp32.manifest.classifier.file == "classifier.onnx"


def test_default_precision_falls_back_loudly_when_its_variant_was_refused() -> None:
    """A refused int8 variant: the bundle would serve fp32, and the gate says so (fails)."""
    from pillsnap_train.config import GateConfig
    from pillsnap_train.release.checks import gates
    from pillsnap_train.release.package import classifier_files

    fp32 = Path("/w/export/classifier.onnx")
    ok = {"precision": "int8", "file": "classifier_int8.onnx", "released": True,
          "top1": 0.9, "top1_drop": 0.01, "speedup": 2.0, "latency_ms": 10.0}  # fmt: skip
    refused = {**ok, "released": False}
    assert classifier_files(fp32, [ok], "fp32") == (
        fp32,
        [(fp32.with_name("classifier_int8.onnx"),
          {"role": "classifier", "precision": "int8",
           "metrics": {"top1": 0.9, "top1_drop": 0.01, "speedup": 2.0, "latency_ms": 10.0}})],
        "fp32",
    )  # fmt: skip
    path, variants, served = classifier_files(fp32, [ok], "int8")
    assert (path.name, served) == ("classifier_int8.onnx", "int8")
    assert variants[0][0] == fp32 and variants[0][1]["metrics"] == {
        "top1": pytest.approx(0.91), "top1_drop": 0.0, "speedup": 1.0, "latency_ms": 20.0
    }  # fmt: skip
    assert classifier_files(fp32, [refused], "int8") == (fp32, [], "fp32")

    report: dict[str, Any] = {
        "parity": {
            "classifier": {"top1_agreement": 1.0, "max_abs_logit_diff": 0.0},
            "pipeline": {"onnx_accuracy": 0.5, "torch_accuracy": 0.5, "delta": 0.0},
        },
        "classifier": {"val_top1": 0.9},
        "end_to_end": {"confident_wrong_rate": 0.0, "confidently_wrong": 0, "n_pills": 10},
        "latency": {},
        "default_precision": {"requested": "int8", "served": "fp32"},
    }
    rows = {g["name"]: g for g in gates(GateConfig(), report)}
    assert rows["default precision"]["status"] == "fail"
    assert "failed its gate" in rows["default precision"]["detail"]
    report["default_precision"]["served"] = "int8"
    rows = {g["name"]: g for g in gates(GateConfig(), report)}
    assert rows["default precision"]["status"] == "pass"


def test_familiarity_gate_is_fitted_exported_and_passes_parity(
    release_run: ReleaseRun, tmp_path: Path
) -> None:
    """``calibration.familiarity_keep``: the export step fits the gate, the exported
    classifier carries it, and the parity gates compare against the gated torch module."""
    raw = release_config(
        tmp_path, aihub=release_run.aihub, yolo=release_run.yolo, detector=False, variants=[]
    )
    raw["calibration"] = {**raw.get("calibration", {}), "familiarity_keep": 0.8}
    rc = load_config(write_config(tmp_path / "gate.yaml", raw))
    shutil.copytree(release_run.work / "classifier", Path(rc.work_dir) / "classifier")
    res = run_release(rc, until="package")
    fam = res["export"]["familiarity"]
    assert 0 < fam["lo"] < fam["hi"] and fam["keep"] == 0.8 and Path(fam["file"]).is_file()
    graph = onnx.load(res["export"]["classifier"]).graph
    assert any(n.name.startswith("/gate/") for n in graph.node)
    report = json.loads((Path(rc.work_dir) / "bundle" / "report.json").read_text())
    gates = {g["name"]: g["status"] for g in report["gates"]}
    assert gates["classifier parity"] == "pass" and gates["pipeline parity"] == "pass"
