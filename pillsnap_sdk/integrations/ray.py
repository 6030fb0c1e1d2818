"""Ray Data integration: identify a dataset of encoded photos with a pool of actors.

Install with ``pip install "pillsnap[ray]"``. Use::

    import ray
    from pillsnap_sdk.integrations.ray import IdentifyBatches

    ds = ray.data.read_binary_files("photos/", include_paths=True)
    out = ds.map_batches(
        IdentifyBatches,
        fn_constructor_kwargs={"bundle": "models/pushin-pill-edge"},
        batch_size=16,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=4),
    )
    out.write_parquet("results/")

Why a callable class: Ray builds it once per actor, so the bundle is read and
sha256-verified and the ONNX sessions are built once per actor, not once per batch. The
output is a pyarrow Table of three string columns (``path``; ``result``, the
IdentifyResult JSON or null; ``error``, null or ``"Type: message"``) rather than nested
structs: Parquet stays compact, the schema never changes with the bundle, and
``IdentifyResult.model_validate_json`` turns a row back into the typed result. The schema
is fixed (:func:`output_schema`), not inferred per batch: a batch where every photo was
read (or none was) would otherwise get a null-typed ``error`` (or ``result``) column, and
blocks with different schemas break ``write_parquet`` across blocks. A bad photo is a row
with an error, never a failed task, so one corrupt file cannot make Ray retry (and
re-fail) a whole block.

``ray`` and ``pyarrow`` are imported only inside this module's functions: ``import
pillsnap_sdk`` never pulls them in, and this module imports without Ray installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..batch.pool import available_cpus, try_identify
from ..errors import InvalidArgumentError, MissingDependencyError
from ..pipeline import Identifier, Mode

__all__ = ["OUTPUT_COLUMNS", "IdentifyBatches", "output_schema"]

#: The output columns, in order.
OUTPUT_COLUMNS = ("path", "result", "error")


def output_schema() -> Any:
    """The ``pyarrow.Schema`` of every batch :class:`IdentifyBatches` returns."""
    pa = _pyarrow()

    return pa.schema(
        [
            pa.field("path", pa.string(), nullable=False),
            pa.field("result", pa.string(), nullable=True),
            pa.field("error", pa.string(), nullable=True),
        ]
    )


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise MissingDependencyError(
            'IdentifyBatches needs pyarrow: pip install "pillsnap[ray]"'
        ) from exc
    return pyarrow


def _actor_cpus() -> int:
    """CPUs Ray assigned to this actor (its ``num_cpus``), at least 1.

    Not ``os.cpu_count()``: on a 16-core node running 8 actors each would start 16
    onnxruntime threads, 128 threads fighting for 16 cores. A fractional reservation
    (``num_cpus=0.5``) rounds to 1 thread. Outside a Ray worker (called directly, in
    tests) it is the CPUs this process may run on.
    """
    try:
        import ray
    except ImportError:
        return available_cpus()
    if not ray.is_initialized():
        return available_cpus()
    try:
        assigned = ray.get_runtime_context().get_assigned_resources()  # type: ignore[no-untyped-call,unused-ignore]
    except Exception:  # the driver has no assignment in some Ray versions
        return available_cpus()
    cpus = float(assigned.get("CPU") or 0)
    return max(1, round(cpus)) if cpus > 0 else 1


class IdentifyBatches:
    """``map_batches`` callable: ``{"path"[, "bytes"]}`` batch -> ``path, result, error``.

    ``intra_op_threads=None`` sizes onnxruntime's threads to the CPUs Ray assigned to the
    actor (``num_cpus`` in ``map_batches``; 1 by default), so actors do not oversubscribe
    their node.
    """

    def __init__(
        self,
        bundle: str | Path,
        *,
        mode: Mode = "auto",
        top_k: int = 5,
        intra_op_threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        # Bad arguments fail the actor's start once, not every photo as an error row.
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidArgumentError(f"top_k must be a positive int, got {top_k!r}")
        _pyarrow()  # a missing pyarrow fails here, before the bundle is loaded
        self.threads = intra_op_threads or _actor_cpus()
        self._idf = Identifier.from_bundle(
            bundle, intra_op_threads=self.threads, providers=providers
        )
        if mode not in ("auto", "single", "combo") or (
            mode == "combo" and not self._idf.has_detector
        ):
            raise InvalidArgumentError(f"mode {mode!r} is not usable with this bundle")
        self._mode: Mode = mode
        self._top_k = top_k

    def __call__(self, batch: Any) -> Any:
        """Identify one batch: a mapping of columns or a pyarrow Table.

        With a ``bytes`` column (``read_binary_files(..., include_paths=True)``) the
        photos come from it; with only ``path`` the actor reads each file itself (a local
        path, or a URI such as ``s3://...`` through pyarrow's filesystems), which skips
        Ray's read tasks and the object-store copy of every photo.
        """
        pa = _pyarrow()
        paths, datas = _columns(batch)
        out_paths: list[str] = []
        results: list[str | None] = []
        errors: list[str | None] = []
        for path, data in zip(paths, datas, strict=True):
            source: str | bytes | None = bytes(data) if data is not None else None
            error: tuple[str, str] | None = None
            result: str | None = None
            if source is None:
                source, error = _source(str(path))
            if error is None:
                assert source is not None
                result, error = try_identify(self._idf, source, self._mode, self._top_k)
            out_paths.append(str(path))
            results.append(result)
            errors.append(None if error is None else f"{error[0]}: {error[1]}")
        return pa.Table.from_arrays(
            [
                pa.array(out_paths, pa.string()),
                pa.array(results, pa.string()),
                pa.array(errors, pa.string()),
            ],
            schema=output_schema(),
        )


def _source(path: str) -> tuple[str | bytes | None, tuple[str, str] | None]:
    """What to identify for a ``path`` row: the path itself, or a URI's bytes."""
    if "://" not in path:
        return path, None  # Identifier reads local files itself
    try:
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        with filesystem.open_input_stream(inner) as fh:
            return fh.read(), None
    except Exception as exc:  # a missing or unreadable object is that photo's error row
        return None, (type(exc).__name__, str(exc)[:2000])


def _columns(batch: Any) -> tuple[list[Any], list[Any]]:
    """The ``path`` and ``bytes`` (or ``None``s) columns as lists, whatever the format."""
    is_table = hasattr(batch, "column_names")
    names = list(batch.column_names) if is_table else list(batch)
    if "path" not in names:
        raise InvalidArgumentError(
            f"IdentifyBatches needs a 'path' column (and optionally 'bytes'), got "
            f"{sorted(names)}: read with ray.data.read_binary_files(..., "
            "include_paths=True), or give a dataset of paths"
        )
    if is_table:  # pyarrow.Table (batch_format="pyarrow")
        paths = batch.column("path").to_pylist()
        datas = batch.column("bytes").to_pylist() if "bytes" in names else [None] * len(paths)
        return paths, datas
    paths = list(batch["path"])
    return paths, list(batch["bytes"]) if "bytes" in names else [None] * len(paths)
