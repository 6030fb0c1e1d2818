"""supervision and COCO views of results; the shipped result JSON Schema."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tinymodels import quadrant_image

from pillsnap_sdk import Identifier, IdentifyResult, InvalidArgumentError, MissingDependencyError
from pillsnap_sdk.cli import main
from pillsnap_sdk.interop import UNKNOWN_CATEGORY_ID, to_coco
from pillsnap_sdk.result_schema import RESULT_SCHEMA_PATH, render

IMG = quadrant_image({0: "red", 3: "blue"})


@pytest.fixture(scope="module")
def idf(tiny_bundle: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle)


@dataclass
class _FakeDetections:
    """The constructor signature of supervision.Detections (the fields we fill)."""

    xyxy: np.ndarray
    confidence: np.ndarray | None = None
    class_id: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)


def test_to_supervision(idf: Identifier, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("supervision")
    fake.Detections = _FakeDetections  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "supervision", fake)
    res = idf.identify(IMG)
    det = res.to_supervision()
    assert det.xyxy.shape == (2, 4) and det.xyxy.dtype == np.float32
    assert np.allclose(det.xyxy, [p.bbox.as_tuple() for p in res.pills if p.bbox])
    names = [p.label.name if p.label else "unknown" for p in res.pills]
    assert list(det.data["class_name"]) == names
    assert list(det.class_id) == [p.label.class_index if p.label else -1 for p in res.pills]
    assert all(len(v) == 2 for v in det.data.values())


def test_to_supervision_whole_photo_and_unknown(
    idf: Identifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("supervision")
    fake.Detections = _FakeDetections  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "supervision", fake)
    res = idf.identify(IMG, mode="single")
    unknown = res.model_copy(
        update={"pills": [res.pills[0].model_copy(update={"status": "unknown"})]}
    )
    det = unknown.to_supervision()
    w, h = res.image_size
    assert det.xyxy.tolist() == [[0.0, 0.0, float(w), float(h)]]
    assert det.class_id.tolist() == [-1] and det.data["class_name"].tolist() == ["unknown"]


def test_to_supervision_without_supervision(
    idf: Identifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "supervision", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError, match="pip install supervision"):
        idf.identify(IMG).to_supervision()
    assert issubclass(MissingDependencyError, ImportError)


def test_to_coco(idf: Identifier) -> None:
    results = idf.identify_batch([IMG, quadrant_image({1: "green"})])
    doc = to_coco(results, ["a.png", "b.png"], idf.labels)
    assert [i["file_name"] for i in doc["images"]] == ["a.png", "b.png"]
    assert doc["images"][0]["width"] == 128
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert cats[UNKNOWN_CATEGORY_ID] == "unknown" and cats[1] == idf.labels.classes[0].name
    anns = doc["annotations"]
    assert len(anns) == sum(len(r.pills) for r in results)
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    first = results[0].pills[0]
    assert first.bbox is not None and first.label is not None
    a = anns[0]
    assert a["image_id"] == 1 and a["category_id"] == first.label.class_index + 1
    assert a["bbox"] == pytest.approx(
        [first.bbox.x1, first.bbox.y1, first.bbox.width, first.bbox.height], abs=0.01
    )
    assert 0.0 <= a["score"] <= 1.0 and a["iscrowd"] == 0
    json.dumps(doc)  # serialisable as is
    with pytest.raises(InvalidArgumentError, match="one file name per result"):
        to_coco(results, ["a.png"], idf.labels)


def test_cli_coco(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.fromarray(IMG).save(photo)
    out = tmp_path / "coco.json"
    assert main(["identify", str(photo), "--bundle", str(tiny_bundle), "--coco", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["images"][0]["file_name"] == str(photo) and len(doc["annotations"]) == 2


def test_shipped_result_schema_is_current() -> None:
    assert RESULT_SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "run `python -m pillsnap_sdk.result_schema` after changing results.py"
    )
    assert RESULT_SCHEMA_PATH.parent.name == "schema"
    assert (RESULT_SCHEMA_PATH.parent / "manifest.schema.json").is_file()


def test_schema_describes_what_is_written(idf: Identifier) -> None:
    schema = json.loads(render())
    dumped = json.loads(idf.identify(IMG).model_dump_json())
    assert set(schema["required"]) <= set(dumped)
    pill_props = schema["$defs"]["PillResult"]["properties"]
    assert "label" in pill_props and set(pill_props) == set(dumped["pills"][0])
    IdentifyResult.model_validate(dumped)


def test_cli_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "result"]) == 0
    assert capsys.readouterr().out == render()
    from pillsnap_sdk.bundle.schema import render as render_manifest

    assert main(["schema", "manifest"]) == 0
    assert capsys.readouterr().out == render_manifest()
