"""``pillsnap-train`` manners: --version, help with examples, one clear line without extras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pillsnap_sdk.version import __version__
from pillsnap_train import cli, release
from pillsnap_train.config import load_config
from pillsnap_train.eta import REFERENCE_EPOCHS, REFERENCE_SECONDS, ReleaseEta, reference_seconds


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pillsnap-train {__version__}"


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "bundle wheel" in out
    with pytest.raises(SystemExit):
        cli.main(["robustness", "--help"])
    assert "(default: 30)" in capsys.readouterr().out


def test_cli_steps_match_release_steps() -> None:
    assert cli.STEPS == release.STEPS
    assert set(REFERENCE_SECONDS) == set(release.STEPS)


def test_without_train_extra_one_clear_line() -> None:
    """A runtime-only install (no torch, yaml, ...) gets one line and exit 2, no traceback."""
    code = (
        "import sys\n"
        "for m in ('torch', 'yaml', 'timm', 'ultralytics', 'tqdm'):\n"
        "    sys.modules[m] = None\n"
        "from pillsnap_train.cli import main\n"
        "sys.exit(main(['release', '--config', 'nope.yaml']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "pip install 'pillsnap[train]'" in lines[0] and "Traceback" not in out.stderr


def test_eta_line_scales_with_this_runs_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    eta = ReleaseEta(release.STEPS, already_done=["ingest"])
    first = eta.line("train-classifier")
    assert first.startswith("overall: step 1/6 (train-classifier);")
    left = sum(v for k, v in REFERENCE_SECONDS.items() if k != "ingest")
    assert f"about {left / 60:.0f} min left" in first and "reference run" in first
    eta.finished("train-classifier", REFERENCE_SECONDS["train-classifier"] * 2)  # 2x slower
    second = eta.line("train-detector")
    left2 = left - REFERENCE_SECONDS["train-classifier"]
    assert f"about {2 * left2 / 60:.0f} min left" in second and "x 2.00" in second


def test_missing_or_bad_config_is_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["release", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert cli.main(["ingest", "--config", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_eta_parallel_training_counts_the_longer_step_and_skips() -> None:
    steps = list(release.STEPS)
    serial = ReleaseEta(steps).line("ingest")
    par = ReleaseEta(steps, parallel=True)
    left = sum(REFERENCE_SECONDS.values()) - REFERENCE_SECONDS["train-classifier"]
    assert f"about {left / 60:.0f} min left" in par.line("ingest") and serial != par.line("ingest")
    par.skip("ingest")
    par.skip("train-detector")  # done by the side process
    par.skip("train-classifier")
    rest = sum(REFERENCE_SECONDS[s] for s in steps[3:])
    shown = f"{rest / 60:.0f} min" if rest >= 90 else f"{rest:.0f} s"
    assert f"about {shown} left" in par.line("export")


def test_eta_reference_is_the_default_config_and_scales_with_epochs() -> None:
    """The reference run is the default config's rebuild; other configs scale by epochs."""
    cfg = load_config(Path(__file__).parents[2] / "configs" / "pushin-pill-edge.yaml")
    assert reference_seconds(cfg) == pytest.approx(REFERENCE_SECONDS)
    longer = cfg.model_copy(
        update={
            "classifier": cfg.classifier.model_copy(update={"soup": []}),  # 1 training, not 2
            "detector": cfg.detector.model_copy(
                update={"epochs": cfg.detector.epochs + REFERENCE_EPOCHS["train-detector"]}
            ),
        }
    )
    ref = reference_seconds(longer)
    assert ref["train-classifier"] == pytest.approx(REFERENCE_SECONDS["train-classifier"] / 2)
    assert ref["train-detector"] == pytest.approx(REFERENCE_SECONDS["train-detector"] * 2)
    assert ref["package"] == REFERENCE_SECONDS["package"]
    off = cfg.model_copy(update={"detector": cfg.detector.model_copy(update={"enabled": False})})
    assert reference_seconds(off)["train-detector"] == 0.0
    eta = ReleaseEta(release.STEPS, reference=ref)
    assert f"about {sum(ref.values()) / 60:.0f} min left" in eta.line("ingest")
