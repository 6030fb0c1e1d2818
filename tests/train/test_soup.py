"""Weight soups: several trainings averaged into one classifier of the same shape."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pillsnap_train.classifier.data import ClassifierSample
from pillsnap_train.classifier.soup import average_state_dicts, ingredient_configs, train_soup
from pillsnap_train.classifier.train import ClassifierConfig, SoupIngredient, load_trained

torch = pytest.importorskip("torch")


def test_average_is_elementwise_mean_and_counters_are_kept() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    out = average_state_dicts([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0]))
    assert int(out["n"]) == 5  # BatchNorm's num_batches_tracked: a counter, not a weight
    assert out["w"].dtype == torch.float32


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"v": torch.zeros(2)}, "other parameters"),
        ({"w": torch.zeros(3)}, "shape of 'w'"),
    ],
)
def test_networks_of_different_shape_are_refused(other: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        average_state_dicts([{"w": torch.zeros(2)}, other])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])


def test_ingredients_override_only_their_keys_and_stay_out_of_old_dumps() -> None:
    cfg = ClassifierConfig(
        epochs=5, soup=[SoupIngredient(), SoupIngredient(seed=3, ema_warmup=False)]
    )
    a, b = ingredient_configs(cfg)
    assert (a.seed, a.ema_warmup, a.epochs, a.soup) == (0, True, 5, [])
    assert (b.seed, b.ema_warmup, b.epochs) == (3, False, 5)
    assert "soup" not in ClassifierConfig().model_dump()  # config hashes of old work dirs
    with pytest.raises(ValidationError):  # only what keeps the network's shape may differ
        ClassifierConfig.model_validate({"soup": [{"img_size": 96}]})


def _photos(root: Path) -> tuple[list[ClassifierSample], list[ClassifierSample]]:
    """Two classes told apart by colour: a red or a blue disc on a grey table."""
    rng = np.random.default_rng(0)
    train, val = [], []
    for i in range(12):
        label = i % 2
        img = np.full((80, 80, 3), 128, np.uint8)
        colour = (220, 40, 40) if label == 0 else (40, 40, 220)
        cx, cy = (int(v) for v in rng.integers(25, 55, 2))
        cv2.circle(img, (cx, cy), 12, colour, -1)
        path = root / f"p{i}.png"
        cv2.imwrite(str(path), img[:, :, ::-1])
        sample = ClassifierSample(str(path), (cx - 13, cy - 13, cx + 13, cy + 13), label)
        (val if i >= 8 else train).append(sample)
    return train, val


def test_soup_trains_each_ingredient_and_ships_their_average(tmp_path: Path) -> None:
    train, val = _photos(tmp_path)
    cfg = ClassifierConfig(
        pretrained=False,
        img_size=32,
        epochs=1,
        batch_size=4,
        threads=1,
        soup=[SoupIngredient(seed=0), SoupIngredient(seed=1, lr=3e-3)],
    )
    out = tmp_path / "classifier"
    res = train_soup(train, val, 2, out, cfg, progress=False)

    record = json.loads((out / "soup.json").read_text())
    assert [i["config"]["seed"] for i in record["ingredients"]] == [0, 1]
    assert record["ingredients"][1]["config"]["lr"] == 3e-3
    soup, soup_cfg = load_trained(res.best_checkpoint)
    first, _ = load_trained(out / "ingredient-0" / "best.pt")
    second, _ = load_trained(out / "ingredient-1" / "best.pt")
    for (name, w), w1, w2 in zip(
        soup.state_dict().items(),
        first.state_dict().values(),
        second.state_dict().values(),
        strict=True,
    ):
        if w.is_floating_point():
            assert torch.allclose(w, (w1 + w2) / 2, atol=1e-6), name
    assert not torch.equal(
        first.state_dict()["conv_stem.weight"], second.state_dict()["conv_stem.weight"]
    )
    assert soup_cfg.img_size == 32 and soup_cfg.soup == []
    assert res.best_top1 == record["soup_val_top1"]
    assert 0.0 <= res.best_top1 <= 1.0
    assert {row["ingredient"] for row in res.history} == {0.0, 1.0}

    # A finished soup is not trained again: each ingredient resumes from its last epoch.
    mtime = (out / "ingredient-0" / "best.pt").stat().st_mtime_ns
    train_soup(train, val, 2, out, cfg, progress=False)
    assert (out / "ingredient-0" / "best.pt").stat().st_mtime_ns == mtime
