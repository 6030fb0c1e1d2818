"""``pillsnap identify ... --jsonl OUT [--workers N]``: resume, bad photos, workers, stdin."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from tinymodels import quadrant_image

from pillsnap_sdk import Identifier
from pillsnap_sdk.cli import main
from pillsnap_sdk.defaults import default_bundle_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Real phone photos of pills beside the repository (../shared), used when present.
TRAIN_PHOTOS = Path(__file__).resolve().parents[3] / "shared/data/pushin-pill-train/images"


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _untimed(recs: list[dict[str, object]]) -> list[dict[str, object]]:
    for r in recs:
        if isinstance(r.get("result"), dict):
            r["result"].pop("timings_ms")  # type: ignore[union-attr]
    return recs


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(quadrant_image({0: "red", 3: "blue"})).save(d / "a.png")
    Image.fromarray(quadrant_image({1: "green"})).save(d / "sub" / "c.png")
    (d / "b.jpg").write_bytes(b"\xff\xd8\xff corrupt")
    return d


def test_jsonl_records_every_photo_and_a_corrupt_one_exit_0(
    tiny_bundle: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    assert main(["identify", str(photos), "--jsonl", str(out), "--bundle", str(tiny_bundle)]) == 0
    recs = _records(out)
    assert [Path(str(r["image"])).name for r in recs] == ["a.png", "b.jpg", "c.png"]
    assert recs[1]["error"]["type"] == "InvalidImageError"  # type: ignore[index]
    assert {p["label"]["name"] for p in recs[0]["result"]["pills"]} == {"red pill", "blue pill"}  # type: ignore[index]


def test_jsonl_resume_identifies_only_what_is_missing(
    tiny_bundle: Path, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    args = ["identify", str(photos), "--jsonl", str(out), "--bundle", str(tiny_bundle)]
    assert main(args) == 0
    first = out.read_text()
    assert main(args) == 0  # everything done: nothing appended
    assert out.read_text() == first
    assert "0 identified, 0 failed, 3 already done" in capsys.readouterr().err
    lines = first.splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:25])  # crashed while writing the second record
    assert main(args) == 0
    # same records, same order, no torn line left (timings aside: they are measured anew)
    assert _untimed(_records(out)) == _untimed([json.loads(x) for x in lines])
    assert "torn last line" in capsys.readouterr().err


def test_jsonl_exit_1_when_no_photo_could_be_read_or_none_found(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"nope")
    out = tmp_path / "o.jsonl"
    assert main(["identify", str(bad), "--jsonl", str(out), "--bundle", str(tiny_bundle)]) == 1
    assert len(_records(out)) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["identify", str(empty), "--jsonl", str(out), "--bundle", str(tiny_bundle)]) == 1


def test_workers_needs_jsonl_and_jsonl_excludes_annotate(tiny_bundle: Path, photos: Path) -> None:
    assert main(["identify", str(photos), "--workers", "2", "--bundle", str(tiny_bundle)]) == 2
    out = str(photos / "o.jsonl")
    assert main(["identify", str(photos), "--jsonl", out, "--annotate", str(photos)]) == 2


def test_folder_and_stdin_in_the_plain_cli(
    tiny_bundle: Path,
    photos: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = (photos / "a.png").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = main(["identify", "-", str(photos / "sub"), "--json", "--bundle", str(tiny_bundle)])
    assert code == 0
    objs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["image"] for o in objs] == ["-", str(photos / "sub" / "c.png")]
    assert {p["label"]["name"] for p in objs[0]["pills"]} == {"red pill", "blue pill"}


def test_two_workers_give_the_sequential_answers_on_real_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names identical, confidences within 1e-6, on the example photos plus a corrupt file;
    the pool resumes a file that a sequential run started."""
    d = tmp_path / "real"
    d.mkdir()
    for p in sorted(EXAMPLES.glob("*.jpg")):
        shutil.copy(p, d / p.name)
    for i, p in enumerate(sorted(TRAIN_PHOTOS.glob("*.jpg"))[:2]):  # real phone photos
        shutil.copy(p, d / f"train_{i}.jpg")
    (d / "corrupt.jpg").write_bytes((EXAMPLES / "single_pill.jpg").read_bytes()[:500])
    n = len(list(d.glob("*.jpg")))
    out = tmp_path / "w2.jsonl"
    # a sequential run did two photos (one of them the corrupt one), then stopped
    assert (
        main(["identify", str(d / "corrupt.jpg"), str(d / "multi_pills.jpg"), "--jsonl", str(out)])
        == 0
    )
    capsys.readouterr()
    assert main(["identify", str(d), "--jsonl", str(out), "--workers", "2"]) == 0
    assert f"{n - 2} identified, 0 failed, 2 already done" in capsys.readouterr().err
    records = _records(out)
    recs = {str(r["image"]): r for r in records}
    idf = Identifier.from_bundle(default_bundle_path())
    assert len(records) == len(recs) == n and "error" in recs[str(d / "corrupt.jpg")]
    for p in sorted(d.glob("*.jpg")):
        if p.name == "corrupt.jpg":
            continue
        want = idf.identify(str(p), top_k=5)
        got = recs[str(p)]["result"]
        assert_same(got, want.model_dump(mode="json"))  # type: ignore[arg-type]


def assert_same(got: dict[str, object], want: dict[str, object]) -> None:
    """Same pills, boxes and names; confidences within 1e-6."""
    assert got["mode_used"] == want["mode_used"]
    gp, wp = got["pills"], want["pills"]
    assert isinstance(gp, list) and isinstance(wp, list) and len(gp) == len(wp)
    for g, w in zip(gp, wp, strict=True):
        assert g["status"] == w["status"]
        assert [c["name"] for c in g["candidates"]] == [c["name"] for c in w["candidates"]]
        for gc, wc in zip(g["candidates"], w["candidates"], strict=True):
            assert abs(gc["confidence"] - wc["confidence"]) <= 1e-6
        if w["bbox"] is not None:
            for k in ("x1", "y1", "x2", "y2"):
                assert abs(g["bbox"][k] - w["bbox"][k]) <= 1e-3


def test_a_dead_worker_is_a_typed_error_not_a_hang(tmp_path: Path) -> None:
    """Workers that cannot start (here: no bundle) end the run with BatchWorkerError."""
    from pillsnap_sdk.batch import BatchWorkerError, IdentifyOptions, InputItem, identify_stream

    opts = IdentifyOptions(bundle=tmp_path / "no-such-bundle", workers=2)
    with pytest.raises(BatchWorkerError, match="re-run the same command to resume"):
        list(identify_stream([InputItem("a.jpg"), InputItem("b.jpg")], opts))
