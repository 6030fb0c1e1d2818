"""Choosing a bundle's classifier precision: ``Identifier.from_bundle(path, precision=...)``,
``$PILLSNAP_PRECISION`` and ``pillsnap identify --precision``.

The tiny bundle's "int8" variant is a classifier whose classes are rolled by one, so which
file answered is visible in the result (a red photo is "green pill" only through it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tinymodels as tm
from onnx import TensorProto, helper, numpy_helper

from pillsnap_sdk import Identifier
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.bundle.variants import available_precisions, select_precision
from pillsnap_sdk.bundle.writer import write_bundle
from pillsnap_sdk.cli import main
from pillsnap_sdk.errors import BundleIntegrityError, InvalidArgumentError

RED = np.zeros((48, 48, 3), np.uint8)
RED[..., 0] = 230


def _rolled_classifier() -> bytes:
    """Like tinymodels.classifier_onnx, but red -> class 1, green -> 2, blue -> 0."""
    w = np.full((3, 3), -5.0, np.float32)
    for i in range(3):
        w[i, (i + 1) % 3] = 5.0
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rolled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(w * 2.0, "W")],
    )
    return tm._serialise(graph)


@pytest.fixture(scope="module")
def with_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tm.make_bundle(tmp_path_factory.mktemp("src") / "b", detector=False)
    b = load_bundle(src)
    m = b.manifest
    out = tmp_path_factory.mktemp("variant") / "b"
    write_bundle(
        out,
        name=m.name,
        version="1.1.0",
        classifier=m.classifier.model_dump(exclude={"sha256"}),
        models={
            "classifier.onnx": b.model_bytes("classifier.onnx"),
            "classifier_int8.onnx": _rolled_classifier(),
        },
        variants=[
            {
                "role": "classifier",
                "file": "classifier_int8.onnx",
                "precision": "int8",
                "metrics": {"top1_drop": 0.004},
            }
        ],
        labels=b.labels,
        extra={"thresholds": m.thresholds.model_dump()},
    )
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tm.make_bundle(tmp_path_factory.mktemp("plain") / "b", detector=False)


def _name(idf: Identifier) -> str | None:
    pill = idf.identify(RED, mode="single").pills[0]
    return pill.candidates[0].name


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PILLSNAP_PRECISION", raising=False)


def test_default_is_the_fp32_classifier(with_int8: Path) -> None:
    idf = Identifier.from_bundle(with_int8)
    assert idf.manifest.classifier.precision == "fp32"
    assert _name(idf) == "red pill"
    assert _name(Identifier.from_bundle(with_int8, precision="fp32")) == "red pill"


def test_int8_loads_the_variant_file(with_int8: Path) -> None:
    idf = Identifier.from_bundle(with_int8, precision="int8")
    assert idf.manifest.classifier.file == "classifier_int8.onnx"
    assert idf.manifest.classifier.precision == "int8"
    assert _name(idf) == "green pill"  # the rolled model answered
    # preprocessing, thresholds and labels stay the bundle's
    assert (
        idf.manifest.classifier.preprocessing
        == load_bundle(with_int8).manifest.classifier.preprocessing
    )


def test_precision_from_environment(with_int8: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILLSNAP_PRECISION", "int8")
    assert _name(Identifier.from_bundle(with_int8)) == "green pill"
    assert _name(Identifier.from_bundle(with_int8, precision="fp32")) == "red pill"  # arg wins
    monkeypatch.setenv("PILLSNAP_PRECISION", "fp16")
    with pytest.raises(InvalidArgumentError, match=r"PILLSNAP_PRECISION.*available: fp32, int8"):
        Identifier.from_bundle(with_int8)


def test_missing_precision_is_a_clear_error(with_int8: Path, plain: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"no 'fp16' classifier; available: fp32, int8"):
        Identifier.from_bundle(with_int8, precision="fp16")
    with pytest.raises(InvalidArgumentError, match=r"no 'int8' classifier; available: fp32$"):
        Identifier.from_bundle(plain, precision="int8")
    with pytest.raises(InvalidArgumentError, match="must be a string"):
        Identifier.from_bundle(with_int8, precision=8)  # type: ignore[arg-type]


def test_available_precisions(with_int8: Path, plain: Path) -> None:
    assert available_precisions(load_bundle(with_int8)) == ["fp32", "int8"]
    assert available_precisions(load_bundle(plain)) == ["fp32"]
    b = load_bundle(plain)
    assert select_precision(b, None) is b and select_precision(b, "fp32") is b


def test_tampered_variant_file_is_refused(with_int8: Path, tmp_path: Path) -> None:
    bad = tmp_path / "b"
    shutil.copytree(with_int8, bad)
    data = bytearray((bad / "classifier_int8.onnx").read_bytes())
    data[-1] ^= 0x01
    (bad / "classifier_int8.onnx").write_bytes(bytes(data))
    for precision in ("int8", None):  # the whole bundle is refused, not just the variant
        with pytest.raises(BundleIntegrityError, match=r"classifier_int8\.onnx"):
            Identifier.from_bundle(bad, precision=precision)


def test_cli_precision(with_int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    photo = tmp_path / "red.png"
    cv2.imwrite(str(photo), RED[..., ::-1])
    args = ["identify", str(photo), "--bundle", str(with_int8), "--mode", "single", "--json"]
    assert main([*args, "--precision", "int8"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert out["pills"][0]["candidates"][0]["name"] == "green pill"
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert out["pills"][0]["candidates"][0]["name"] == "red pill"
    assert main([*args, "--precision", "fp16"]) != 0
    assert "available: fp32, int8" in capsys.readouterr().err


def test_cli_precision_reaches_the_archive_path(with_int8: Path, tmp_path: Path) -> None:
    import os

    import cv2

    photo = tmp_path / "red.png"
    cv2.imwrite(str(photo), RED[..., ::-1])
    out = tmp_path / "out.jsonl"
    args = ["identify", str(photo), "--bundle", str(with_int8), "--mode", "single"]
    assert main([*args, "--precision", "int8", "--jsonl", str(out)]) == 0
    line = json.loads(out.read_text().splitlines()[0])
    assert "green pill" in json.dumps(line)
    assert "PILLSNAP_PRECISION" not in os.environ  # set for that run only
    assert main([*args, "--precision", "fp16", "--jsonl", str(tmp_path / "x.jsonl")]) != 0


def test_bench_measures_the_chosen_precision(
    with_int8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pillsnap bench` once measured fp32 whatever $PILLSNAP_PRECISION said: a kiosk saw
    the numbers of a model it would not run. The variant is now what the SDK and the floor
    load, and the report (and any baseline key) names it."""
    from pillsnap_sdk.bench.run import run_bench

    empty = tmp_path / "no-photos"
    empty.mkdir()
    fp32 = run_bench(with_int8, rounds=1, quick=True, images=empty)
    assert fp32.meta["bundle"]["precision"] == "fp32"
    assert fp32.meta["bundle"]["key"].endswith("@1.1.0")
    int8 = run_bench(with_int8, rounds=1, quick=True, images=empty, precision="int8")
    assert int8.meta["bundle"]["precision"] == "int8"
    assert int8.meta["bundle"]["key"].endswith("@1.1.0+int8")
    assert int8.meta["bundle"]["models_mb"].keys() == {"classifier_int8.onnx"}
    monkeypatch.setenv("PILLSNAP_PRECISION", "int8")
    from_env = run_bench(with_int8, rounds=1, quick=True, images=empty)
    assert from_env.meta["bundle"]["key"] == int8.meta["bundle"]["key"]
    with pytest.raises(InvalidArgumentError, match="available: fp32, int8"):
        run_bench(with_int8, rounds=1, quick=True, images=empty, precision="fp16")


def test_cli_bench_refuses_a_precision_the_bundle_lacks(
    with_int8: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "--bundle", str(with_int8), "--quick", "--rounds", "1"]
    assert main([*args, "--precision", "fp16"]) == 1
    assert "available: fp32, int8" in capsys.readouterr().err


def test_cold_start_child_loads_the_benched_precision(
    with_int8: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The cold-start row runs in a fresh process; it must open the precision the rest of
    the bench measured, not the bundle's default (nor whatever its environment says)."""
    import time

    import cv2

    from pillsnap_sdk.bench import coldstart

    photo = tmp_path / "red.png"
    cv2.imwrite(str(photo), RED[..., ::-1])
    seen: list[str] = []
    real = coldstart.Identifier

    def spy(bundle: object) -> Identifier:
        seen.append(bundle.manifest.classifier.precision)  # type: ignore[attr-defined]
        return real(bundle)  # type: ignore[arg-type]

    monkeypatch.setattr(coldstart, "Identifier", spy)
    monkeypatch.setenv("PILLSNAP_PRECISION", "fp32")
    assert (
        coldstart._child(time.perf_counter(), [str(with_int8), str(photo), "0", "0", "int8"]) == 0
    )
    assert seen == ["int8"]
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["load_ms"] >= 0


def test_cold_start_runs_for_a_variant(with_int8: Path) -> None:
    import cv2

    from pillsnap_sdk.bench.coldstart import measure_cold_start
    from pillsnap_sdk.bench.scenes import MULTI, Scene

    ok, data = cv2.imencode(".png", RED[..., ::-1])
    assert ok
    bundle = select_precision(load_bundle(with_int8), "int8")
    cs = measure_cold_start(bundle, Scene(MULTI, "red", data.tobytes(), 1), runs=1, repeats=0)
    assert cs.runs == 1 and cs.cold_start_ms > 0
