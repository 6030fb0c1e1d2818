"""Robustness evaluation: shifts are real changes, rows score what was shifted, CLI errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pillsnap_sdk import Identifier
from pillsnap_sdk.image import load_image
from pillsnap_sdk.results import BBox, BundleRef, Candidate, IdentifyResult, PillResult
from pillsnap_train.cli import main
from pillsnap_train.evaluate import GroundTruthImage, PipelineScore
from pillsnap_train.robustness import (
    CAMERA_SHIFTS,
    evaluate_robustness,
    format_table,
    plain_table_scenes,
    upscale,
)

CODES = ("red", "blue")


def _photos(root: Path, n: int = 3) -> list[GroundTruthImage]:
    """Photos 400x300 with 1-2 coloured pills on a light textured table."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        img = np.clip(rng.normal(200, 10, (300, 400, 3)), 0, 255).astype(np.uint8)
        boxes, codes = [], []
        for k in range(1 + i % 2):
            cx, cy, ax, ay = 100 + 200 * k, 150, 40, 28
            colour = (220, 40, 40) if k == 0 else (40, 60, 220)
            cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, colour, -1, cv2.LINE_AA)
            boxes.append([cx - ax - 1.0, cy - ay - 1.0, cx + ax + 2.0, cy + ay + 2.0])
            codes.append(CODES[k])
        path = root / f"p{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        out.append(GroundTruthImage(str(path), np.array(boxes, np.float32), codes))
    return out


class Oracle:
    """Names every pill right, but only in the exact pixels of the validation photos."""

    def __init__(self, images: list[GroundTruthImage]) -> None:
        self.known = {hashlib.sha1(load_image(gt.path).tobytes()).hexdigest(): gt for gt in images}
        self.calls = 0

    def identify(self, image: np.ndarray) -> IdentifyResult:
        self.calls += 1
        gt = self.known.get(hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest())
        pills = []
        for box, code in zip(gt.boxes.tolist() if gt else [], gt.codes if gt else [], strict=True):
            pills.append(
                PillResult(
                    bbox=BBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]),
                    detection_confidence=0.9,
                    status="identified",
                    candidates=[Candidate(class_index=0, code=code, name=code, confidence=0.9)],
                )
            )
        h, w = image.shape[:2]
        return IdentifyResult(
            mode_used="combo",
            pills=pills,
            image_size=(w, h),
            bundle=BundleRef(name="oracle", version="0"),
            timings_ms={},
        )


@pytest.mark.parametrize("shift", CAMERA_SHIFTS, ids=lambda s: s.name)
def test_each_shift_changes_pixels_keeps_geometry_and_repeats(shift, tmp_path: Path) -> None:
    img = load_image(_photos(tmp_path, 1)[0].path)
    a = shift.apply(img, np.random.default_rng(3))
    b = shift.apply(img, np.random.default_rng(3))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - img.astype(int)).mean() > 1.0


def test_rows_score_the_shifted_photos(tmp_path: Path) -> None:
    images = _photos(tmp_path)
    oracle = Oracle(images)
    rows = evaluate_robustness(oracle, images, plain_table=4, dense_piles=2)  # type: ignore[arg-type]
    names = [r.condition for r in rows]
    assert names == [
        "none",
        *(s.name for s in CAMERA_SHIFTS),
        "upscaled-12mp",
        "plain-table",
        "dense-pile",
    ]
    n_pills = sum(len(gt.codes) for gt in images)
    by = {r.condition: r for r in rows}
    # Unshifted photos: the oracle is perfect; any shifted photo is new to it.
    assert by["none"].score.n_pills == n_pills and by["none"].score.accuracy == 1.0
    for s in CAMERA_SHIFTS:
        assert by[s.name].score.n_pills == n_pills and by[s.name].score.found == 0
        assert by[s.name].same_answers == 0.0  # every pill named under none, missed here
    assert by["none"].same_answers is None
    up = by["upscaled-12mp"]
    assert up.score.n_pills == n_pills and up.score.found == 0 and up.same_answers == 0.0
    assert by["plain-table"].n_images == 4 and by["plain-table"].score.found == 0
    assert by["plain-table"].same_answers is None
    piles = by["dense-pile"]
    assert piles.n_images == 2 and piles.score.n_pills >= 2 * 10 and piles.same_answers is None
    assert oracle.calls == len(images) * (2 + len(CAMERA_SHIFTS)) + 4 + 2
    table = format_table([r.as_dict() for r in rows])
    assert "| none | 3 | 4 | 100.0 % |" in table and "| darker | 3 | 4 | 0.0 % | -100.0 |" in table
    assert "| upscaled-12mp | 3 | 4 | 0.0 % | -100.0 | 0.0 % | 0.0 % | 0.0 % | 0.0 % |" in table
    assert json.dumps([r.as_dict() for r in rows])  # JSON-serialisable


def test_plain_table_scenes_use_only_the_given_pills(tmp_path: Path) -> None:
    images = _photos(tmp_path)
    scenes = plain_table_scenes(images, 5, seed=1, pills=(2, 4))
    again = plain_table_scenes(images, 5, seed=1, pills=(2, 4))
    assert len(scenes) == 5
    for (img, gt), (img2, gt2) in zip(scenes, again, strict=True):
        assert np.array_equal(img, img2) and gt.codes == gt2.codes
        assert 2 <= len(gt.codes) <= 4 and set(gt.codes) <= set(CODES)
        h, w = img.shape[:2]
        assert (gt.boxes[:, :2] >= 0).all() and (gt.boxes[:, 2] <= w).all()
        assert (gt.boxes[:, 3] <= h).all()
        # A plain light table: the median pixel is bright and the table has little texture.
        assert np.median(img) > 120


def test_real_identifier_runs_every_condition(tiny_bundle: Path, tmp_path: Path) -> None:
    images = _photos(tmp_path)
    rows = evaluate_robustness(Identifier.from_bundle(tiny_bundle), images, plain_table=2)
    assert len(rows) == len(CAMERA_SHIFTS) + 3
    assert all(0.0 <= r.score.accuracy <= 1.0 for r in rows)


def test_upscale_keeps_the_scene_and_scales_boxes(tmp_path: Path) -> None:
    gt = _photos(tmp_path, 1)[0]
    img = load_image(gt.path)
    big, big_gt = upscale(img, gt, megapixels=1.0)
    h, w = img.shape[:2]
    assert abs(big.shape[0] * big.shape[1] - 1e6) < 0.01e6
    sx, sy = big.shape[1] / w, big.shape[0] / h
    np.testing.assert_allclose(big_gt.boxes, gt.boxes * [sx, sy, sx, sy], rtol=1e-5)
    assert big_gt.codes == gt.codes and big_gt.path == gt.path
    back = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 3.0


def test_same_answers_compares_pill_by_pill() -> None:
    a, b = PipelineScore(answers=["x", "?", "", "y"]), PipelineScore(answers=["x", "y", "", "y"])
    assert a.same_answers(b) == 0.75
    with pytest.raises(ValueError, match="pill by pill"):
        a.same_answers(PipelineScore(answers=["x"]))


def test_no_images_is_an_error() -> None:
    with pytest.raises(ValueError, match="no validation images"):
        evaluate_robustness(Oracle([]), [])  # type: ignore[arg-type]


def test_cli_refuses_missing_data_bundle_and_bad_scenes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "name: t\nversion: 0.0.1\nwork_dir: work\noutput_dir: out\n"
        f"data:\n  sources:\n    - {{kind: yolo, path: {tmp_path}, name: x}}\n"
    )
    assert main(["robustness", "--config", str(cfg)]) == 2
    assert "run `ingest` first" in capsys.readouterr().err
    assert not (tmp_path / "work" / "config.sha256").exists()  # read-only: no marker written
    assert main(["robustness", "--config", str(cfg), "--scenes", "-1"]) == 2


def test_cli_on_a_released_bundle(release_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert release_run.rc == 0
    out = tmp_path / "rows.json"
    rc = main(
        [
            "robustness",
            "--config",
            str(release_run.config_path),
            "--scenes",
            "2",
            "--piles",
            "1",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["bundle"] == "tiny-e2e@0.0.1"
    rows = {r["condition"]: r for r in data["rows"]}
    assert {"plain-table", "upscaled-12mp", "dense-pile"} <= set(rows)
    assert len(rows) == len(CAMERA_SHIFTS) + 4
    # Same bundle, same photos, same scoring: the "none" row is the release report's number.
    report = json.loads((release_run.work / "bundle" / "report.json").read_text())
    for key in ("n_pills", "found", "correct", "false_positives"):
        assert rows["none"][key] == report["end_to_end"][key]
    bad = main(
        [
            "robustness",
            "--config",
            str(release_run.config_path),
            "--bundle",
            str(tmp_path / "missing"),
        ]
    )
    assert bad == 2
