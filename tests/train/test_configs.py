"""The committed release configs load, and the default one says what models/ holds.

Why: a config is only read when someone runs a multi-hour release; a typo in an
experiment's keys, or a default config whose name/version drifted from the committed
bundle, should fail in seconds here instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pillsnap_sdk import Identifier
from pillsnap_train.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def test_there_are_configs() -> None:
    assert REPO / "configs" / "pushin-pill-edge.yaml" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_loads_and_its_soup_shares_one_network(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name and cfg.version
    for ingredient in cfg.classifier.soup:  # only seed/EMA/epochs/lr may differ (strict keys)
        assert set(ingredient.model_dump(exclude_none=True)) <= {
            "seed",
            "ema_warmup",
            "epochs",
            "lr",
        }


def test_default_config_is_the_committed_default_bundle() -> None:
    cfg = load_config(REPO / "configs" / "pushin-pill-edge.yaml")
    manifest = Identifier.from_bundle(REPO / "models" / cfg.name).manifest
    assert (manifest.name, manifest.version) == (cfg.name, cfg.version)
    th = manifest.thresholds
    assert th.detector_confidence_named == cfg.calibration.detector_confidence_named
