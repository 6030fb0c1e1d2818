"""``pillsnap_sdk.integrations.ray``: IdentifyBatches called directly, then on a local Ray.

The local-Ray tests (marker ``ray``) start one loopback-only Ray for the module
(``start_local_ray``), run the example script's pipeline on real photos plus a truncated
JPEG, and compare every row with the sequential ``Identifier.identify`` loop.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pillsnap_sdk import Identifier, InvalidArgumentError
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.integrations import ray as ray_integration
from pillsnap_sdk.integrations.ray import IdentifyBatches, output_schema

from .test_batch_cli import EXAMPLES, TRAIN_PHOTOS, assert_same

pa = pytest.importorskip("pyarrow", reason="the `ray` extra (ray[data], pyarrow) is not installed")
pq = pytest.importorskip("pyarrow.parquet")

N_TRAIN = 6


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ray-photos")
    for p in sorted(EXAMPLES.glob("*.jpg")):
        shutil.copy(p, d / p.name)
    for i, p in enumerate(sorted(TRAIN_PHOTOS.glob("*.jpg"))[:N_TRAIN]):
        shutil.copy(p, d / f"train_{i}.jpg")
    # a truncated JPEG: the header and the start of the scan, as a failed upload leaves it
    (d / "corrupt.jpg").write_bytes((EXAMPLES / "multi_pills.jpg").read_bytes()[:700])
    return d


@pytest.fixture(scope="module")
def sequential(photo_dir: Path) -> dict[str, dict[str, Any]]:
    """The reference: the plain ``Identifier.identify`` loop, one photo at a time."""
    idf = Identifier.from_bundle(default_bundle_path())
    return {
        p.name: idf.identify(str(p), top_k=5).model_dump(mode="json")
        for p in sorted(photo_dir.glob("*.jpg"))
        if p.name != "corrupt.jpg"
    }


def _check_rows(
    rows: list[dict[str, Any]], photo_dir: Path, sequential: dict[str, dict[str, Any]]
) -> None:
    by_name = {Path(r["path"]).name: r for r in rows}
    assert len(by_name) == len(rows), "a photo appears twice"
    assert sorted(by_name) == sorted(p.name for p in photo_dir.glob("*.jpg"))
    bad = by_name.pop("corrupt.jpg")
    assert bad["result"] is None and bad["error"].startswith("InvalidImageError: ")
    assert sorted(by_name) == sorted(sequential)
    for name, row in by_name.items():
        assert row["error"] is None, row["error"]
        assert_same(json.loads(row["result"]), sequential[name])


def _rows(table: Any) -> list[dict[str, Any]]:
    return list(table.to_pylist())


def test_called_directly_without_ray(
    photo_dir: Path, sequential: dict[str, dict[str, Any]]
) -> None:
    fn = IdentifyBatches(default_bundle_path(), intra_op_threads=1)
    paths = sorted(photo_dir.glob("*.jpg"))
    out = fn({"path": [str(p) for p in paths], "bytes": [p.read_bytes() for p in paths]})
    assert out.schema.equals(output_schema())
    _check_rows(_rows(out), photo_dir, sequential)
    # the pyarrow batch format (batch_format="pyarrow") gives the same rows
    arrow = pa.table({"bytes": [p.read_bytes() for p in paths], "path": [str(p) for p in paths]})
    _check_rows(_rows(fn(arrow)), photo_dir, sequential)
    # a dataset of paths only: the actor reads each file (a missing one is an error row)
    by_path = _rows(fn(pa.table({"path": [str(p) for p in paths]})))
    _check_rows(by_path, photo_dir, sequential)
    missing = fn({"path": [str(photo_dir / "gone.jpg"), "file:///no/such/photo.jpg"]})
    assert missing["result"].null_count == 2
    assert all(
        e.startswith(("InvalidImageError: ", "FileNotFoundError: "))
        for e in missing["error"].to_pylist()
    ), missing["error"].to_pylist()
    with pytest.raises(InvalidArgumentError, match="include_paths=True"):
        fn({"bytes": []})
    with pytest.raises(InvalidArgumentError, match="top_k"):
        IdentifyBatches(default_bundle_path(), top_k=0)


def test_all_null_columns_keep_the_string_type_and_write_one_parquet_file(
    photo_dir: Path, tmp_path: Path
) -> None:
    """A batch of only good (or only bad) photos: ``error`` (``result``) is all null, and
    still a string column, so blocks share one schema and Parquet files concatenate."""
    fn = IdentifyBatches(default_bundle_path(), intra_op_threads=1)
    good = photo_dir / "single_pill.jpg"
    bad = photo_dir / "corrupt.jpg"
    only_good = fn({"path": [str(good)], "bytes": [good.read_bytes()]})
    only_bad = fn({"path": [str(bad)], "bytes": [bad.read_bytes()]})
    empty = fn({"path": [], "bytes": []})
    for table in (only_good, only_bad, empty):
        assert table.schema.equals(output_schema())
        assert [f.type for f in table.schema] == [pa.string()] * 3
    assert only_good["error"].null_count == 1 and only_bad["result"].null_count == 1
    for i, table in enumerate((only_good, only_bad, empty)):
        pq.write_table(table, tmp_path / f"part-{i}.parquet")
    back = pq.read_table(tmp_path)
    assert back.num_rows == 2 and back.schema.field("error").type == pa.string()


def test_onnxruntime_threads_follow_the_actors_assigned_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray's assigned CPUs, not the machine's: 3 CPUs -> 3 threads, 0.5 -> 1 thread."""
    assigned: dict[str, float] = {}

    class Ctx:
        def get_assigned_resources(self) -> dict[str, float]:
            return assigned

    fake = types.SimpleNamespace(is_initialized=lambda: True, get_runtime_context=Ctx)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(ray_integration, "available_cpus", lambda: 64)
    for cpus, threads in ((3.0, 3), (0.5, 1), (1.0, 1), (0.0, 1)):
        assigned["CPU"] = cpus
        assert ray_integration._actor_cpus() == threads
    fake.is_initialized = lambda: False  # called outside Ray: the process's CPUs
    assert ray_integration._actor_cpus() == 64


# -- on a local Ray ------------------------------------------------------------------------
def _example_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("ray_batch_example", EXAMPLES / "ray_batch.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    pytest.importorskip("ray", reason="the `ray` extra is not installed")
    from pillsnap_sdk.integrations.ray_local import quiet_data_context, start_local_ray

    ray = start_local_ray(num_cpus=2, attempts=2, start_timeout_s=60)
    try:
        # a pipeline that stops moving fails the test in 2 minutes instead of hanging CI
        quiet_data_context(no_progress_timeout_s=120)
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.ray
def test_example_pipeline_on_local_ray_writes_the_sequential_answers_as_parquet(
    local_ray: Any, photo_dir: Path, sequential: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """2 actors, one photo per batch (so batches with all-null columns are certain), the
    example's defaults otherwise (a dataset of paths: the actors read the files)."""
    assert local_ray.util.get_node_ip_address() == "127.0.0.1"
    out = tmp_path / "parquet"
    _example_module().identify_to_parquet(
        local_ray, str(photo_dir), str(out), actors=2, batch_size=1, files_per_block=3
    )
    table = pq.read_table(out)
    assert table.schema.names == ["path", "result", "error"]
    assert [f.type for f in table.schema] == [pa.string()] * 3
    _check_rows(_rows(table), photo_dir, sequential)


@pytest.mark.ray
def test_identify_batches_with_ray_defaults_numpy_batches(
    local_ray: Any, photo_dir: Path, sequential: dict[str, dict[str, Any]]
) -> None:
    """The README's form: default (numpy) batches, default read task resources."""
    ds = local_ray.data.read_binary_files(str(photo_dir), include_paths=True)
    out = ds.map_batches(
        IdentifyBatches,
        fn_constructor_kwargs={"bundle": str(default_bundle_path())},
        batch_size=4,
        # 2 actors x 0.5 CPU leave one of the 2 CPUs for the read task (else it never runs)
        num_cpus=0.5,
        compute=local_ray.data.ActorPoolStrategy(size=2),
    )
    _check_rows(out.take_all(), photo_dir, sequential)
