"""``pillsnap_sdk.integrations.ray.IdentifyBatches``: called directly, then on local Ray."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pillsnap_sdk import Identifier, InvalidArgumentError
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.integrations.ray import IdentifyBatches

from .test_batch_cli import EXAMPLES, assert_same


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ray-photos")
    for p in sorted(EXAMPLES.glob("*.jpg")):
        shutil.copy(p, d / p.name)
    (d / "corrupt.jpg").write_bytes((EXAMPLES / "multi_pills.jpg").read_bytes()[:700])
    return d


def _check_rows(rows: list[dict[str, Any]], photo_dir: Path) -> None:
    by_name = {Path(r["path"]).name: r for r in rows}
    assert sorted(by_name) == sorted(p.name for p in photo_dir.glob("*.jpg"))
    bad = by_name.pop("corrupt.jpg")
    assert bad["result"] is None and bad["error"].startswith("InvalidImageError: ")
    idf = Identifier.from_bundle(default_bundle_path())
    for name, row in by_name.items():
        assert row["error"] is None
        want = idf.identify(str(photo_dir / name), top_k=3).model_dump(mode="json")
        assert_same(json.loads(row["result"]), want)


def test_called_directly_without_ray(photo_dir: Path) -> None:
    fn = IdentifyBatches(default_bundle_path(), intra_op_threads=1)
    paths = sorted(photo_dir.glob("*.jpg"))
    out = fn({"path": [str(p) for p in paths], "bytes": [p.read_bytes() for p in paths]})
    assert set(out) == {"path", "result", "error"}
    rows = [dict(zip(out, vals, strict=True)) for vals in zip(*out.values(), strict=True)]
    _check_rows(rows, photo_dir)
    with pytest.raises(InvalidArgumentError, match="include_paths=True"):
        fn({"bytes": []})
    with pytest.raises(InvalidArgumentError, match="top_k"):
        IdentifyBatches(default_bundle_path(), top_k=0)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.ray
def test_two_actors_on_local_ray_give_the_sequential_answers(
    local_ray: Any, photo_dir: Path
) -> None:
    ds = local_ray.data.read_binary_files(str(photo_dir), include_paths=True)
    out = ds.map_batches(
        IdentifyBatches,
        fn_constructor_kwargs={"bundle": str(default_bundle_path())},
        batch_size=2,
        # 2 actors x 0.5 CPU leave one of the 2 CPUs for the read task (else it never runs)
        num_cpus=0.5,
        compute=local_ray.data.ActorPoolStrategy(size=2),
    )
    rows = out.take_all()
    assert out.schema().names == ["path", "result", "error"]
    _check_rows(rows, photo_dir)
