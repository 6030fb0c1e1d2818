"""The release keeps the better of the detector's two training stages."""

from __future__ import annotations

from pathlib import Path

from pillsnap_train.release import _best_map


def _results(run: Path, maps: list[float]) -> Path:
    run.mkdir(parents=True)
    head = "                  epoch,  metrics/mAP50(B),  metrics/mAP50-95(B)\n"
    rows = "".join(f"{i + 1},{m + 0.3},{m}\n" for i, m in enumerate(maps))
    (run / "results.csv").write_text(head + rows)
    return run


def test_best_map_reads_the_best_epoch_and_tolerates_padding(tmp_path: Path) -> None:
    assert _best_map(_results(tmp_path / "a", [0.1, 0.42, 0.4])) == 0.42
    assert _best_map(tmp_path / "missing") == -1.0
    assert _best_map(_results(tmp_path / "empty", [])) == -1.0
