"""The issue-16 bench rows on the tiny bundle: floor search, 12 MP row, batch vs loop.

Why: these rows decide what "SDK / floor" means and whether big photos and batching are
reported at all; they must run, pick the fastest candidate, and serialise, without timing
asserts (speed targets live in benchmarks/).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from pillsnap_sdk import Identifier
from pillsnap_sdk.bench import format_table, run_bench
from pillsnap_sdk.bench.bigphoto import measure_big_photo, same_answers
from pillsnap_sdk.bench.floor import Floor, FloorConfig, SessionConfig
from pillsnap_sdk.bench.floorsearch import Candidate, candidates, search_floor
from pillsnap_sdk.bench.scenes import MULTI, Scene, upscaled_photo
from pillsnap_sdk.bench.throughput import measure_throughput
from pillsnap_sdk.bundle.loader import load_bundle
from tests.tinymodels import quadrant_image


def test_candidates_cover_threads_and_spinning() -> None:
    cfgs = candidates(cpus=2)
    assert {c.threads for c in cfgs} == {None, 1, 2}
    assert {c.spinning for c in cfgs} == {True, False}
    assert len(candidates(cpus=8)) == 8  # default, 1, 2, 8 threads x spinning on/off


def test_search_picks_the_fastest_candidate(tiny_bundle: Path) -> None:
    b = load_bundle(tiny_bundle)
    rgb = quadrant_image({0: "red", 1: "green", 3: "blue"})
    crops = [rgb[:64, :64]] * 20  # > CLASSIFIER_CHUNK: whole batch and chunks both tried
    found = search_floor(b, ["CPUExecutionProvider"], rgb, crops, rounds=2)
    cls = [c for c in found.candidates if c.model == "classifier"]
    det = [c for c in found.candidates if c.model == "detector"]
    assert {c.chunk for c in cls} == {None, 16}
    assert any(c.config.opt_level == "extended" for c in cls)  # second round: other levels
    best_cls = min(cls, key=lambda c: c.best_ms)
    assert (found.best.classifier, found.best.chunk) == (best_cls.config, best_cls.chunk)
    assert found.best.detector == min(det, key=lambda c: c.best_ms).config
    json.dumps(found.summary())
    floor = Floor(b, config=found.best)
    det_in, chunks = floor.inputs(rgb, crops)
    assert det_in is not None and sum(len(c) for c in chunks) == 20
    assert len(chunks) == (1 if found.best.chunk is None else 2)


def test_floor_config_labels_and_defaults() -> None:
    assert FloorConfig().chunk is None
    assert SessionConfig().label == "threads default, spinning default, opt all"
    cfg = FloorConfig(SessionConfig(2, False), SessionConfig(1, True, "extended"), 16)
    assert "threads 2, spinning off" in cfg.label and "chunks of 16" in cfg.label
    c = Candidate("classifier", SessionConfig(), None, 1.0, 2.0)
    assert c.best_ms <= c.median_ms


def test_big_photo_row_and_same_answers(tiny_bundle: Path) -> None:
    idf = Identifier.from_bundle(tiny_bundle)
    big = upscaled_photo(_png(quadrant_image({0: "red"}, size=64)), size=(1024, 768))
    assert Image.open(io.BytesIO(big)).size == (1024, 768)
    assert upscaled_photo(_png(quadrant_image({0: "red"}, size=64)), size=(1024, 768)) == big
    scene = Scene(MULTI, "tiny", _jpeg(quadrant_image({0: "red", 3: "blue"}, size=128)), 2)
    r = measure_big_photo(idf, scene, rounds=2)
    assert r.small_size == (128, 128) and r.big_size == (4032, 3024)  # square: landscape
    assert r.pills_small == r.pills_big == 2 and r.matched == 2 and r.same_names == 2
    a = idf.identify(scene.data)
    assert same_answers(a, a) == (2, 2)


def test_batch_row_carries_its_ratio_to_the_loop(tiny_bundle: Path) -> None:
    idf = Identifier.from_bundle(tiny_bundle)
    scene = Scene(MULTI, "tiny", _jpeg(quadrant_image({0: "red"})), 1)
    rows = measure_throughput(idf, scene, images=3, rounds=1, threads=(2,))
    names = [r.name for r in rows]
    assert names == ["identify_batch(3)", "identify x3, loop", "identify x3, 2 threads"]
    assert rows[0].vs_loop is not None and rows[0].vs_loop > 0
    assert all(r.vs_loop is None for r in rows[1:])


def test_full_bench_reports_the_new_rows(tiny_bundle: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-photos"
    empty.mkdir()
    report = run_bench(tiny_bundle, rounds=1, quick=False, images=empty)
    assert set(report.floor_search) == {"single_pill", MULTI}
    assert all(s.floor_config for s in report.scenes)
    assert report.big_photo is not None
    table = format_table(report)
    assert "floor total (best bare ORT)" in table and "12 MP" in table and "/ loop" in table
    json.dumps(report.to_json())


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()
