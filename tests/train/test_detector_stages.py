"""The release keeps the better of the detector's two training stages."""

from __future__ import annotations

from pathlib import Path

from pillsnap_train.release import _best_ap50


def _results(run: Path, rows: list[tuple[float, float]]) -> Path:
    run.mkdir(parents=True)
    head = "                  epoch,  metrics/mAP50(B),  metrics/mAP50-95(B)\n"
    body = "".join(f"{i + 1}, {a}, {b}\n" for i, (a, b) in enumerate(rows))
    (run / "results.csv").write_text(head + body)
    return run


def test_ap50_is_read_at_the_epoch_ultralytics_kept(tmp_path: Path) -> None:
    # Epoch 2 has the highest mAP@0.5 but epoch 3 the highest fitness: best.pt is epoch 3.
    run = _results(tmp_path / "a", [(0.50, 0.20), (0.81, 0.30), (0.78, 0.42)])
    assert _best_ap50(run) == 0.78
    assert _best_ap50(tmp_path / "missing") == -1.0
    assert _best_ap50(_results(tmp_path / "empty", [])) == -1.0
