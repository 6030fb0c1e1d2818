"""Identify every photo under a folder with Ray Data and write the results as Parquet.

    pip install -c constraints.txt -e ".[ray]"
    python examples/ray_batch.py PHOTOS_DIR results/ --actors 2

Each actor loads and verifies the bundle once and runs onnxruntime with as many threads as
CPUs it reserved (``--cpus-per-actor``). Output: Parquet files with columns ``path``,
``result`` (IdentifyResult JSON, null on error) and ``error`` (null or "Type: message");
read them back with ``pyarrow.parquet.read_table`` or ``ray.data.read_parquet``, and a row
with ``IdentifyResult.model_validate_json(row["result"])``.

Without ``--address`` it starts a local Ray on 127.0.0.1 only
(``pillsnap_sdk.integrations.ray_local``). On a cluster, pass ``--address auto`` (or set
RAY_ADDRESS) and a shared or cloud path (``s3://bucket/photos/``) for both folders.

The defaults are the settings that cost least CPU per photo on a 2-core machine
(docs/scale-out.md, "Ray's overhead"): a local folder is listed by the driver and the
actors read the files themselves (``--read paths``: no read tasks, no copy of every photo
through the object store), one block per ``--files-per-block`` photos, pyarrow batches,
and no progress bars or stats logging. ``--read binary`` is the README's
``read_binary_files`` form (separate read tasks: on a cluster reading from cloud storage
they overlap I/O with the actors' compute); a local Ray then gets one more logical CPU
for them, or they would wait forever behind the actors.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pillsnap_sdk.batch import expand_inputs
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.integrations.ray import IdentifyBatches
from pillsnap_sdk.integrations.ray_local import quiet_data_context, start_local_ray

#: What the folder walk reads; anything else (notes, thumbnails' .db files) is skipped.
EXTENSIONS = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"]


def identify_to_parquet(
    ray: Any,
    photos: str,
    out: str,
    *,
    bundle: str | Path | None = None,
    actors: int = 2,
    cpus_per_actor: float = 1.0,
    batch_size: int = 16,
    files_per_block: int = 64,
    read: str = "paths",
) -> None:
    """The pipeline: photos -> ``actors`` IdentifyBatches actors -> Parquet files in ``out``.

    ``read="paths"``: ``photos`` is a local folder (walked like ``pillsnap identify``) or a
    ``.txt`` list of paths/URIs, and the actors read each file. ``read="binary"``:
    ``read_binary_files(photos)`` tasks read the bytes (any folder or cloud prefix).
    """
    quiet_data_context()
    fn_kwargs = {"bundle": str(bundle or default_bundle_path())}
    if read == "paths":
        paths = [item.name for item in expand_inputs([photos])]
        blocks = max(actors, -(-len(paths) // files_per_block))
        ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    elif read == "binary":
        ds = ray.data.read_binary_files(photos, include_paths=True, file_extensions=EXTENSIONS)
    else:
        raise ValueError(f"read must be 'paths' or 'binary', got {read!r}")
    ds.map_batches(
        IdentifyBatches,
        fn_constructor_kwargs=fn_kwargs,
        batch_size=batch_size,
        batch_format="pyarrow",
        num_cpus=cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(size=actors),
    ).write_parquet(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("photos", help="folder (or cloud prefix) of photos, read recursively")
    p.add_argument("out", help="folder to write Parquet files into")
    p.add_argument("--bundle", default=None, help="bundle dir or .zip (default: models/)")
    p.add_argument("--actors", type=int, default=2, help="Identifier actors")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16, help="photos per map_batches call")
    p.add_argument("--files-per-block", type=int, default=64, help="photos per block (paths)")
    p.add_argument(
        "--read",
        choices=["paths", "binary"],
        default="paths",
        help="paths: actors read the files (local folder or .txt list); "
        "binary: read_binary_files tasks (any folder or cloud prefix)",
    )
    p.add_argument("--address", default=None, help="Ray cluster (default: start a local one)")
    p.add_argument("--num-cpus", type=float, default=None, help="logical CPUs of a local Ray")
    args = p.parse_args()

    t0 = time.perf_counter()
    if args.address is None:
        # binary reads are tasks that reserve a CPU: give them one besides the actors'
        extra = 1 if args.read == "binary" else 0
        ray = start_local_ray(args.num_cpus or args.actors * args.cpus_per_actor + extra)
    else:
        import ray

        ray.init(address=args.address, log_to_driver=False)
    t_init = time.perf_counter() - t0
    t1 = time.perf_counter()
    try:
        identify_to_parquet(
            ray,
            args.photos,
            args.out,
            bundle=args.bundle,
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            batch_size=args.batch_size,
            files_per_block=args.files_per_block,
            read=args.read,
        )
    finally:
        ray.shutdown()
    t_run = time.perf_counter() - t1
    print(f"ray init {t_init:.1f} s, identify + write Parquet {t_run:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
