"""Execution providers and threads: say what you run on, fail loudly when asked to.

Why: onnxruntime silently falls back to CPU when a requested provider cannot load. A
kiosk vendor who paid for a GPU wants an error (``strict_providers=True``); everyone
else wants the fallback *and* a log line saying it happened. A misspelt provider name
is a programming error in both modes, and a bad ``intra_op_threads`` must be a typed
argument error, not a pybind ``TypeError`` from deep inside onnxruntime.

These tests run on the CPU-only onnxruntime wheel; the CUDA cases skip themselves on a
machine where CUDA really is available.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
from tinymodels import quadrant_image

from pillsnap_sdk import (
    Identifier,
    InvalidArgumentError,
    PillsnapError,
    ProviderUnavailableError,
    runtime,
)
from pillsnap_sdk.runtime import PROVIDER_ALIASES, check_providers, resolve_provider_name

CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
needs_no_cuda = pytest.mark.skipif(
    CUDA in onnxruntime.get_available_providers(), reason="CUDA is available here"
)
needs_no_openvino = pytest.mark.skipif(
    OPENVINO in onnxruntime.get_available_providers(), reason="OpenVINO is available here"
)
needs_openvino = pytest.mark.skipif(
    OPENVINO not in onnxruntime.get_available_providers(),
    reason="needs onnxruntime-openvino (the openvino extra)",
)
IMG = quadrant_image({0: "red", 3: "blue"})


def _pillsnap_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pillsnap_sdk" and r.levelno == logging.WARNING
    ]


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Count onnxruntime sessions built (they still get built)."""
    built: list[Any] = []
    real = onnxruntime.InferenceSession

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs.get("providers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counting)
    return built


@needs_no_cuda
@pytest.mark.parametrize("providers", [[CUDA], [CUDA, "CPUExecutionProvider"]])
def test_strict_missing_cuda_raises(
    tiny_bundle: Path, providers: list[str], sessions: list[Any]
) -> None:
    """strict: ProviderUnavailableError naming the provider and the fix, before any
    session is built (no half-initialised Identifier, no wasted load time)."""
    with pytest.raises(ProviderUnavailableError) as info:
        Identifier.from_bundle(tiny_bundle, providers=providers, strict_providers=True)
    msg = str(info.value)
    assert CUDA in msg and "not available" in msg and "pillsnap[gpu]" in msg
    assert "CPUExecutionProvider" in msg, "the message should say what *is* available"
    assert sessions == []


@needs_no_cuda
@pytest.mark.parametrize("providers", [[CUDA], [CUDA, "CPUExecutionProvider"]])
def test_lenient_missing_cuda_warns_and_works(
    tiny_bundle: Path,
    providers: list[str],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    sessions: list[Any],
) -> None:
    """Default mode: one warning per model via the ``pillsnap_sdk`` logger, CPU fallback,
    identical results - and no noise from onnxruntime itself (UserWarning, stdout)."""
    caplog.set_level(logging.WARNING, logger="pillsnap_sdk")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idf = Identifier.from_bundle(tiny_bundle, providers=providers)
    logged = _pillsnap_warnings(caplog)
    assert len(logged) == 2, logged  # classifier + detector
    assert all(CUDA in m and "falling back to CPUExecutionProvider" in m for m in logged)
    assert {m.split(":", 1)[0] for m in logged} == {"classifier.onnx", "detector.onnx"}
    assert not [w for w in caught if "provider" in str(w.message).lower()]
    assert "EP Error" not in capfd.readouterr().out
    assert idf.providers == ["CPUExecutionProvider"]
    assert all(p == ["CPUExecutionProvider"] for p in sessions), sessions
    plain = Identifier.from_bundle(tiny_bundle)
    assert idf.identify(IMG).pills == plain.identify(IMG).pills


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(
    "providers",
    [
        ["CUDAExecutionProvder"],
        ["FooExecutionProvider", "CPUExecutionProvider"],
        [("NotAProvider", {"device_id": 0})],
        ["gpu"],
        ["cpu", "open-vino"],
    ],
    ids=["typo", "foo_plus_cpu", "tuple_form", "gpu_is_not_a_short_name", "bad_second_alias"],
)
def test_unknown_provider_name_is_an_argument_error(
    tiny_bundle: Path,
    providers: list[Any],
    strict: bool,
    capfd: pytest.CaptureFixture[str],
    sessions: list[Any],
) -> None:
    """A name onnxruntime has never heard of is a typo, in strict and lenient mode alike:
    InvalidArgumentError (a ValueError) listing the known names; onnxruntime's own
    'EP Error ... Falling back' banner on stdout never appears."""
    with pytest.raises(InvalidArgumentError) as info:
        Identifier.from_bundle(tiny_bundle, providers=providers, strict_providers=strict)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "unknown onnxruntime execution provider" in msg
    assert "CPUExecutionProvider" in msg and CUDA in msg  # the known names are listed
    assert all(short in msg for short in PROVIDER_ALIASES)  # and the short ones
    assert "EP Error" not in capfd.readouterr().out
    assert sessions == []


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(
    "providers", [None, [], ["CPUExecutionProvider"], [("CPUExecutionProvider", {})]]
)
def test_cpu_forms_work_in_both_modes(
    tiny_bundle: Path, providers: Any, strict: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pillsnap_sdk")
    idf = Identifier.from_bundle(tiny_bundle, providers=providers, strict_providers=strict)
    assert idf.providers == ["CPUExecutionProvider"]
    assert _pillsnap_warnings(caplog) == []
    assert len(idf.identify(IMG).pills) == 2


@needs_no_cuda
@pytest.mark.parametrize("strict", [False, True])
def test_available_but_not_active_provider(
    tiny_bundle: Path,
    strict: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A provider that is installed but fails to initialise (missing CUDA libraries,
    no driver) is caught by the check on the *built* session. Simulated by making the
    SDK believe CUDA is available while onnxruntime cannot actually start it."""
    real = onnxruntime.get_available_providers()
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, *real])
    caplog.set_level(logging.WARNING, logger="pillsnap_sdk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxruntime's own "not in available providers"
        if strict:
            with pytest.raises(ProviderUnavailableError, match="not active"):
                Identifier.from_bundle(tiny_bundle, providers=[CUDA], strict_providers=True)
            return
        idf = Identifier.from_bundle(tiny_bundle, providers=[CUDA])
    assert idf.providers == ["CPUExecutionProvider"]
    assert any("not active" in m for m in _pillsnap_warnings(caplog))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, False, "2", float("nan")])
def test_intra_op_threads_validation(tiny_bundle: Path, bad: Any) -> None:
    """Not a positive int -> InvalidArgumentError (also a ValueError), never TypeError."""
    with pytest.raises(InvalidArgumentError, match="intra_op_threads must be an int from 1 to"):
        Identifier.from_bundle(tiny_bundle, intra_op_threads=bad)


@pytest.mark.parametrize("threads", [None, 1, 2, 4])
def test_intra_op_threads_do_not_change_results(tiny_bundle: Path, threads: int | None) -> None:
    """Thread count is a speed knob only: results are identical to the default."""
    ref = Identifier.from_bundle(tiny_bundle).identify(IMG, top_k=3)
    got = Identifier.from_bundle(tiny_bundle, intra_op_threads=threads).identify(IMG, top_k=3)
    assert got.pills == ref.pills


def test_provider_errors_are_pillsnap_errors() -> None:
    """Callers can catch everything the SDK raises on purpose with one except clause."""
    assert issubclass(ProviderUnavailableError, PillsnapError)
    assert issubclass(InvalidArgumentError, PillsnapError)
    assert issubclass(InvalidArgumentError, ValueError)


# --- short provider names -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "full"),
    [
        ("cpu", "CPUExecutionProvider"),
        ("cuda", CUDA),
        ("tensorrt", "TensorrtExecutionProvider"),
        ("trt", "TensorrtExecutionProvider"),
        ("openvino", OPENVINO),
        ("coreml", "CoreMLExecutionProvider"),
        ("directml", "DmlExecutionProvider"),
        ("dml", "DmlExecutionProvider"),
        ("OpenVINO", OPENVINO),
        (" CUDA ", CUDA),
        ("cudaexecutionprovider", CUDA),
        (CUDA, CUDA),
        ("DmlExecutionProvider", "DmlExecutionProvider"),
    ],
)
def test_short_and_full_names_resolve(given: str, full: str) -> None:
    """Every short name maps to a provider this onnxruntime knows (so the table cannot
    drift from onnxruntime's spelling), case-insensitively; full names pass through."""
    assert resolve_provider_name(given) == full
    assert full in onnxruntime.get_all_providers()


def test_check_providers_resolves_pairs_and_drops_duplicates() -> None:
    """Options pairs keep their options under the full name; "cpu" and its full name in
    one list are one provider (onnxruntime refuses duplicates with a raw error)."""
    got = check_providers([("openvino", {"device_type": "CPU"}), "cpu", "CPUExecutionProvider"])
    assert got == [(OPENVINO, {"device_type": "CPU"}), "CPUExecutionProvider"]
    assert check_providers(("CUDA", "cpu")) == [CUDA, "CPUExecutionProvider"]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(
    "providers", [["cpu"], ("CPU",), [("cpu", {})], ["cpu", "CPUExecutionProvider"]]
)
def test_short_cpu_name_works(
    tiny_bundle: Path, providers: Any, strict: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pillsnap_sdk")
    idf = Identifier.from_bundle(tiny_bundle, providers=providers, strict_providers=strict)
    assert idf.providers == ["CPUExecutionProvider"]
    assert _pillsnap_warnings(caplog) == []
    assert idf.identify(IMG).pills == Identifier.from_bundle(tiny_bundle).identify(IMG).pills


def test_env_short_names(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILLSNAP_PROVIDERS", "cpu")
    assert Identifier.from_bundle(tiny_bundle).providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("raw", ["gpu", "cpu,opnevino", " , "])
def test_env_bad_names_blame_the_variable(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch, sessions: list[Any], raw: str
) -> None:
    """A bad $PILLSNAP_PROVIDERS names the variable (no code of the caller's is at fault)
    and builds no session."""
    monkeypatch.setenv("PILLSNAP_PROVIDERS", raw)
    with pytest.raises(InvalidArgumentError, match="PILLSNAP_PROVIDERS"):
        Identifier.from_bundle(tiny_bundle)
    assert sessions == []


@needs_no_openvino
def test_strict_missing_openvino_names_the_extra(tiny_bundle: Path, sessions: list[Any]) -> None:
    """Asked for by its short name and absent: the error says which extra provides it
    and that onnxruntime has to go first (both wheels install the same package)."""
    with pytest.raises(ProviderUnavailableError) as info:
        Identifier.from_bundle(tiny_bundle, providers=["openvino"], strict_providers=True)
    msg = str(info.value)
    assert OPENVINO in msg and "pillsnap[openvino]" in msg
    assert "pip uninstall -y onnxruntime" in msg
    assert sessions == []


@needs_no_openvino
def test_lenient_missing_openvino_reports_what_runs(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lenient: a warning that says how to make it an error, and ``providers`` reports the
    CPU that really runs, not the OpenVINO that was asked for."""
    caplog.set_level(logging.WARNING, logger="pillsnap_sdk")
    idf = Identifier.from_bundle(tiny_bundle, providers=["openvino", "cpu"])
    assert idf.providers == ["CPUExecutionProvider"]
    logged = _pillsnap_warnings(caplog)
    assert logged and all("strict_providers=True" in m for m in logged), logged


@needs_openvino
@pytest.mark.parametrize("providers", [["openvino"], [("openvino", {"device_type": "CPU"})]])
def test_openvino_runs_and_agrees_with_cpu(tiny_bundle: Path, providers: Any) -> None:
    """With the openvino extra installed: OpenVINO really runs (strict), ``providers``
    says so, and the answers are CPU's (same classes, probabilities within 1e-4)."""
    idf = Identifier.from_bundle(tiny_bundle, providers=providers, strict_providers=True)
    assert idf.providers[0] == OPENVINO
    got = idf.identify(IMG, top_k=3)
    ref = Identifier.from_bundle(tiny_bundle).identify(IMG, top_k=3)
    assert [[c.code for c in p.candidates] for p in got.pills] == [
        [c.code for c in p.candidates] for p in ref.pills
    ]
    for g, r in zip(got.pills, ref.pills, strict=True):
        for gc, rc in zip(g.candidates, r.candidates, strict=True):
            assert abs(gc.confidence - rc.confidence) < 1e-4


@pytest.mark.parametrize(
    ("provider", "wheel", "extra"),
    [
        (OPENVINO, "onnxruntime-openvino", "pillsnap[openvino]"),
        (CUDA, "onnxruntime-gpu", "pillsnap[gpu]"),
        ("TensorrtExecutionProvider", "onnxruntime-gpu", "pillsnap[gpu]"),
    ],
)
def test_install_hint_replaces_onnxruntime(
    provider: str, wheel: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pillsnap depends on ``onnxruntime``, so ``pip install pillsnap[extra]`` puts the
    provider wheel *beside* it; the hint is the three steps that really replace it."""
    monkeypatch.setattr(runtime, "_installed_onnxruntimes", lambda: {"onnxruntime": "1.32.0"})
    hint = runtime.install_hint(provider)
    assert hint.index(extra) < hint.index("pip uninstall -y onnxruntime")
    assert hint.index("pip uninstall -y onnxruntime") < hint.index(
        f"pip install --force-reinstall --no-deps {wheel}"
    )


def test_install_hint_spots_a_shadowed_provider_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state that following the old one-line instruction leaves: both wheels
    installed, the stock one's files loaded, OpenVINO absent. The hint names the clash and
    the exact fix, pinned to the installed version."""
    monkeypatch.setattr(
        runtime,
        "_installed_onnxruntimes",
        lambda: {"onnxruntime": "1.32.0", "onnxruntime-openvino": "1.24.1"},
    )
    monkeypatch.setattr(runtime, "available_providers", lambda: ["CPUExecutionProvider"])
    hint = runtime.install_hint(OPENVINO)
    assert "onnxruntime-openvino 1.24.1 is installed but so is onnxruntime" in hint
    assert (
        "pip uninstall -y onnxruntime && "
        "pip install --force-reinstall --no-deps 'onnxruntime-openvino==1.24.1'" in hint
    )
    # Available (its files won) but failing to start: the clash is not the cause.
    monkeypatch.setattr(runtime, "available_providers", lambda: [OPENVINO, "CPUExecutionProvider"])
    assert "is installed but so is" not in runtime.install_hint(OPENVINO)


# --- the CLI's --providers -------------------------------------------------------------


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "quad.png"
    Image.fromarray(IMG).save(path)
    return path


def _json_pills(out: str) -> Any:
    return json.loads(out.splitlines()[0])["pills"]


def test_cli_providers_short_name(
    tiny_bundle: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pillsnap_sdk.cli import main

    argv = ["identify", str(photo), "--bundle", str(tiny_bundle), "--json"]
    assert main([*argv, "--providers", "cpu"]) == 0
    with_cpu = capsys.readouterr().out
    assert main(argv) == 0
    assert '"pills"' in with_cpu
    assert _json_pills(with_cpu) == _json_pills(capsys.readouterr().out)


@pytest.mark.parametrize("command", ["identify", "bench"])
def test_cli_unknown_provider_is_a_usage_error(
    tiny_bundle: Path, photo: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pillsnap_sdk.cli import main

    argv = [command, *([str(photo)] if command == "identify" else [])]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--bundle", str(tiny_bundle), "--providers", "cpu,gpu"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--providers" in err and "'gpu'" in err and "openvino" in err


@needs_no_openvino
def test_cli_unavailable_provider_is_an_error_not_a_fallback(
    tiny_bundle: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asking on the command line is asking for it: exit 1 with the install steps, no
    results computed on the CPU instead."""
    from pillsnap_sdk.cli import main

    argv = ["identify", str(photo), "--bundle", str(tiny_bundle), "--json"]
    assert main([*argv, "--providers", "openvino"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert OPENVINO in captured.err and "pillsnap[openvino]" in captured.err


# --- benchmarks/openvino_compare.py ---------------------------------------------------


@needs_no_openvino
def test_openvino_compare_says_what_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.openvino_compare import main

    assert main(["--rounds", "1"]) == 2
    assert "openvino extra" in capsys.readouterr().err


@needs_openvino
def test_openvino_compare_runs_and_agrees(
    tiny_bundle: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.openvino_compare import main

    out = tmp_path / "ov.json"
    argv = ["--bundle", str(tiny_bundle), "--rounds", "1", "--photos", str(photo)]
    assert main([*argv, "--model-photo", str(photo), "--json-out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows][:3] == [
        "detector batch 1",
        "classifier batch 1",
        "classifier batch 22",
    ]
    assert all(r["ok"] for r in rows) and len(rows) == 4
    assert "| identify 2-pill photo (quad.png) |" in capsys.readouterr().out
