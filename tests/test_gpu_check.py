"""benchmarks/gpu_check: the CUDA machine's one-shot profile check, exercised without a GPU.

Why: the script runs on hardware this project rarely has, once, by someone in a hurry; a
typo in a code path nobody ran would waste that machine. ``--dry-run`` runs every
configuration's code (session building, IO binding, the profile table) with the CPU
provider standing in, and these tests pin what the GPU run depends on: the TensorRT
options, the provider lists, and that a dry run can never report a target as passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks import gpu_check
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.runtime import check_providers, create_session
from pillsnap_sdk.stages import CLASSIFIER_CHUNK

REPO = Path(__file__).resolve().parent.parent


def test_dry_run_runs_every_config_and_passes_nothing(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "gpu.json"
    lines: list[str] = []
    argv = ["--dry-run", "--bundle", str(tiny_bundle), "--rounds", "1"]
    argv += ["--trt-cache", str(tmp_path / "trt"), "--json-out", str(out_json)]
    code = gpu_check.main(argv, out=lines.append)
    assert code == 0, "\n".join(lines)
    report = json.loads(out_json.read_text())
    assert report["dry_run"] is True and report["failed"] == []
    got = {(r["config"], r["scene"]) for r in report["results"]}
    assert got == {(c, s) for c in gpu_check.CONFIGS for s in ("single_pill", "multi_pill")}
    assert all(r["same_top1_as_cpu"] for r in report["results"])
    assert all(r["providers"] == ["CPUExecutionProvider"] for r in report["results"])
    # The profile table: every config x scene x metric of the RTX 5080 profile, none passed.
    rows = report["profile"]
    assert {r["profile"] for r in rows} == {f"rtx5080/{c}" for c in gpu_check.CONFIGS}
    assert len(rows) == len(gpu_check.CONFIGS) * 2 * 2
    assert {r["status"] for r in rows} == {"not run"}
    assert {r["target_ms"] for r in rows} == {100.0, 50.0}
    table = "\n".join(lines)
    assert "DRY RUN" in table and "rtx5080/tensorrt-fp16" in table and "PASS" not in table


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here"
)
def test_without_cuda_it_says_what_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "pillsnap[gpu]" in err and "--dry-run" in err


def test_unknown_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["--dry-run", "--configs", "cuda,vulkan"]) == 2
    assert "choose from" in capsys.readouterr().err


def test_tensorrt_options(tiny_bundle: Path, tmp_path: Path) -> None:
    """fp16, engine + timing cache in the given folder, and one classifier profile that
    covers every batch the pipeline sends (else each new batch size rebuilds an engine)."""
    m = load_bundle(tiny_bundle).manifest
    assert m.detector is not None
    cls = gpu_check.trt_options(m.classifier, tmp_path, dynamic_batch=True)
    assert cls["trt_fp16_enable"] is True and cls["trt_engine_cache_enable"] is True
    assert cls["trt_engine_cache_path"] == str(tmp_path) == cls["trt_timing_cache_path"]
    h, w = m.classifier.preprocessing.size
    name = m.classifier.input_name
    assert cls["trt_profile_min_shapes"] == f"{name}:1x3x{h}x{w}"
    assert cls["trt_profile_max_shapes"] == f"{name}:{CLASSIFIER_CHUNK}x3x{h}x{w}"
    det = gpu_check.trt_options(m.detector, tmp_path, dynamic_batch=False)
    assert not any(k.startswith("trt_profile") for k in det)


def test_provider_lists(tiny_bundle: Path, tmp_path: Path) -> None:
    """GPU runs fall back TensorRT -> CUDA -> CPU for unsupported nodes, and every name is
    one onnxruntime knows (a typo would only show on the GPU machine)."""
    m = load_bundle(tiny_bundle).manifest

    def names(config: str, dry: bool) -> list[str]:
        provs = gpu_check.provider_lists(
            config, m.classifier, tmp_path, dynamic_batch=True, dry_run=dry
        )
        return [p if isinstance(p, str) else p[0] for p in check_providers(provs)]

    trt, cuda, cpu = gpu_check.TRT, gpu_check.CUDA, gpu_check.CPU
    assert names("tensorrt-fp16", False) == [trt, cuda, cpu]
    assert names("cuda", False) == names("cuda+iobinding", False) == [cuda, cpu]
    assert all(names(c, True) == [cpu] for c in gpu_check.CONFIGS)


def test_io_binding_runner_gives_the_sessions_outputs(tiny_bundle: Path) -> None:
    b = load_bundle(tiny_bundle)
    spec = b.manifest.classifier
    sess = create_session(
        b.model_bytes(spec.file),
        spec,
        providers=["CPUExecutionProvider"],
        intra_op_threads=1,
        strict_providers=True,
        dynamic_batch=True,
    )
    h, w = spec.preprocessing.size
    x = np.random.default_rng(0).random((3, 3, h, w), dtype=np.float32)
    want = sess.run(None, {spec.input_name: x})
    got = gpu_check.IOBindingRunner(sess, "cpu").run(None, {spec.input_name: x})
    assert len(got) == len(want)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, r)


def test_shell_wrapper_dry_run(tiny_bundle: Path, tmp_path: Path) -> None:
    """What the GPU machine runs, end to end through bash (installs nothing)."""
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    args = ["--dry-run", "--rounds", "1", "--bundle", str(tiny_bundle), "--configs", "cuda"]
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), *args, "--trt-cache", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "DRY RUN" in proc.stdout and "onnxruntime" in proc.stdout
    assert "rtx5080/cuda" in proc.stdout


def test_a_failing_config_keeps_the_others_rows(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a borrowed GPU, TensorRT or IO binding failing (raw onnxruntime errors too) must
    not lose the rows already measured: exit 1, the failure listed, the rest reported."""
    real = gpu_check.build_identifier

    def flaky(bundle: Any, config: str, cache: Path, *, dry_run: bool) -> Any:
        if config == "cuda+iobinding":
            raise RuntimeError("CUDA failure 700: an illegal memory access")
        return real(bundle, config, cache, dry_run=dry_run)

    monkeypatch.setattr(gpu_check, "build_identifier", flaky)
    out_json = tmp_path / "gpu.json"
    argv = ["--dry-run", "--bundle", str(tiny_bundle), "--rounds", "1", "--json-out"]
    lines: list[str] = []
    assert gpu_check.main([*argv, str(out_json)], out=lines.append) == 1
    report = json.loads(out_json.read_text())
    assert report["failed"] == [
        "cuda+iobinding: RuntimeError: CUDA failure 700: an illegal memory access"
    ]
    assert {r["config"] for r in report["results"]} == {"cuda", "tensorrt-fp16"}
    assert any(line.startswith("FAILED cuda+iobinding") for line in lines)
