"""Ray Data integration: identify a dataset of encoded photos with a pool of actors.

Install with ``pip install "pillsnap[ray]"``. Use::

    import ray
    from pillsnap_sdk.integrations.ray import IdentifyBatches

    ds = ray.data.read_binary_files("photos/", include_paths=True)
    out = ds.map_batches(
        IdentifyBatches,
        fn_constructor_kwargs={"bundle": "models/pushin-pill-edge"},
        batch_size=16,
        compute=ray.data.ActorPoolStrategy(size=4),
    )
    out.write_parquet("results/")

Why a callable class: Ray builds it once per actor, so the bundle is read and
sha256-verified and the ONNX sessions are built once per actor, not once per batch. The
output is three string columns (``path``; ``result``, the IdentifyResult JSON or null;
``error``, null or ``"Type: message"``) rather than nested structs: Parquet stays compact,
the schema never changes with the bundle, and ``IdentifyResult.model_validate_json`` turns a
row back into the typed result. A bad photo is a row with an error, never a failed task,
so one corrupt file cannot make Ray retry (and re-fail) a whole block.

``ray`` is imported only inside this module's functions: ``import pillsnap_sdk`` never
pulls it in, and this module imports without Ray installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..batch.pool import available_cpus, try_identify
from ..errors import InvalidArgumentError
from ..pipeline import Identifier, Mode

__all__ = ["IdentifyBatches"]


def _actor_cpus() -> int:
    """CPUs Ray reserved for this actor (``num_cpus``); the process's CPUs outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            cpus = float(ctx.get_assigned_resources().get("CPU") or 0)  # type: ignore[no-untyped-call]
            if cpus > 0:
                return max(1, round(cpus))
    except ImportError:
        pass
    return available_cpus()


class IdentifyBatches:
    """``map_batches`` callable: ``{"bytes", "path"}`` batch -> ``path, result, error``.

    ``intra_op_threads=None`` sizes onnxruntime's threads to the CPUs Ray assigned to the
    actor (``num_cpus`` in ``map_batches``; 1 by default), so actors do not oversubscribe
    their node.
    """

    def __init__(
        self,
        bundle: str | Path,
        *,
        mode: Mode = "auto",
        top_k: int = 3,
        intra_op_threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        self.threads = intra_op_threads or _actor_cpus()
        self._idf = Identifier.from_bundle(
            bundle, intra_op_threads=self.threads, providers=providers
        )
        # Bad arguments fail the actor's start once, not every photo as an error row.
        if mode not in ("auto", "single", "combo") or (
            mode == "combo" and not self._idf.has_detector
        ):
            raise InvalidArgumentError(f"mode {mode!r} is not usable with this bundle")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidArgumentError(f"top_k must be a positive int, got {top_k!r}")
        self._mode: Mode = mode
        self._top_k = top_k

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[str | None]]:
        if "bytes" not in batch or "path" not in batch:
            raise InvalidArgumentError(
                f"IdentifyBatches needs 'bytes' and 'path' columns, got {sorted(batch)}: "
                "read with ray.data.read_binary_files(..., include_paths=True)"
            )
        paths: list[str | None] = []
        results: list[str | None] = []
        errors: list[str | None] = []
        for path, data in zip(batch["path"], batch["bytes"], strict=True):
            result, error = try_identify(self._idf, bytes(data), self._mode, self._top_k)
            paths.append(str(path))
            results.append(result)
            errors.append(None if error is None else f"{error[0]}: {error[1]}")
        return {"path": paths, "result": results, "error": errors}
