"""Identify every photo under a folder with Ray Data and write the results as Parquet.

    pip install -c constraints.txt -e ".[ray]"
    python examples/ray_batch.py PHOTOS_DIR results/ --actors 2

Each actor loads and verifies the bundle once and runs onnxruntime with as many threads as
CPUs it reserved (``--cpus-per-actor``). Output: Parquet files with columns ``path``,
``result`` (IdentifyResult JSON, null on error) and ``error`` (null or "Type: message");
read them back with ``pyarrow.parquet.read_table`` or ``ray.data.read_parquet``, and a row
with ``IdentifyResult.model_validate_json(row["result"])``.

On a cluster, pass ``--address auto`` (or set RAY_ADDRESS) and a shared or cloud path
(``s3://bucket/photos/``) for both folders.
"""

from __future__ import annotations

import argparse
import time

import ray

from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.integrations.ray import IdentifyBatches

#: What the folder walk reads; anything else (notes, thumbnails' .db files) is skipped.
EXTENSIONS = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("photos", help="folder (or cloud prefix) of photos, read recursively")
    p.add_argument("out", help="folder to write Parquet files into")
    p.add_argument("--bundle", default=None, help="bundle dir or .zip (default: models/)")
    p.add_argument("--actors", type=int, default=2, help="Identifier actors")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16, help="photos per map_batches call")
    p.add_argument("--address", default=None, help="Ray cluster (default: start a local one)")
    p.add_argument("--num-cpus", type=float, default=None, help="logical CPUs of a local Ray")
    args = p.parse_args()

    # A local Ray must have a CPU slot left for the read tasks besides the actors' ones, or
    # the reads wait for a free CPU forever (the actors hold them all): actors + 1.
    num_cpus = args.num_cpus
    if args.address is None and num_cpus is None:
        num_cpus = args.actors * args.cpus_per_actor + 1
    t0 = time.perf_counter()
    ray.init(address=args.address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t0
    bundle = str(args.bundle or default_bundle_path())
    ds = ray.data.read_binary_files(args.photos, include_paths=True, file_extensions=EXTENSIONS)
    out = ds.map_batches(
        IdentifyBatches,
        fn_constructor_kwargs={"bundle": bundle},
        batch_size=args.batch_size,
        num_cpus=args.cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(size=args.actors),
    )
    t1 = time.perf_counter()
    out.write_parquet(args.out)
    t_run = time.perf_counter() - t1
    ray.shutdown()
    print(f"ray init {t_init:.1f} s, identify + write Parquet {t_run:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
