"""Where Ray's time goes: the same photos through Ray Data under different settings.

    python -m benchmarks.batch_ray_tune --n 200 --configs default,tuned --rounds 2

Each config is one fresh process (``--driver``) that starts a loopback Ray, runs
read_binary_files -> map_batches(IdentifyBatches) -> write_parquet and shuts down, watched
by :mod:`benchmarks.batch_tree` (wall, CPU seconds by process kind, peak RSS/PSS). The
``--workers 2`` process pool runs on the same photos as the yardstick. Configs run
interleaved (A B C A B C ...) so that a neighbour's load hits all of them alike; on a
shared machine compare the ratios within one invocation, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.batch_scale import make_photos
from benchmarks.batch_tree import run_watched

#: What each knob means (all default to Ray's own behaviour when absent):
#: batch_format ("default" numpy | "pyarrow"), batch_size, read_cpus (num_cpus of the read
#: tasks; Ray's default 1), logical_cpus (of the local Ray), files_per_block (read blocks
#: = n / files_per_block; 0: Ray decides), quiet (no progress bars / stats logging),
#: actor_cpus (num_cpus per actor), object_store_mb, max_tasks_in_flight (per actor).
CONFIGS: dict[str, dict[str, Any]] = {
    # what examples/ray_batch.py did before tuning (2 actors, actors + 1 logical CPUs)
    "default": {
        "batch_format": "default",
        "batch_size": 16,
        "read_cpus": 1,
        "logical_cpus": 3,
        "files_per_block": 0,
        "quiet": False,
    },
    # one knob at a time from there
    "quiet": {
        "batch_format": "default",
        "batch_size": 16,
        "read_cpus": 1,
        "logical_cpus": 3,
        "files_per_block": 0,
        "quiet": True,
    },
    "arrow": {
        "batch_format": "pyarrow",
        "batch_size": 16,
        "read_cpus": 1,
        "logical_cpus": 3,
        "files_per_block": 0,
        "quiet": True,
    },
    "arrow64": {
        "batch_format": "pyarrow",
        "batch_size": 16,
        "read_cpus": 1,
        "logical_cpus": 3,
        "files_per_block": 64,
        "quiet": True,
    },
    # reads that reserve no CPU: Ray starts a worker process per concurrent read task
    "read0": {
        "batch_format": "pyarrow",
        "batch_size": 16,
        "read_cpus": 0,
        "logical_cpus": 2,
        "files_per_block": 64,
        "quiet": True,
    },
    # no read stage: a dataset of paths, the actors read the files (as the pool's workers do)
    "paths": {
        "paths": True,
        "batch_format": "pyarrow",
        "batch_size": 16,
        "logical_cpus": 2,
        "files_per_block": 64,
        "quiet": True,
    },
    "paths4": {
        "paths": True,
        "batch_format": "pyarrow",
        "batch_size": 4,
        "logical_cpus": 2,
        "files_per_block": 64,
        "quiet": True,
    },
    "paths64": {
        "paths": True,
        "batch_format": "pyarrow",
        "batch_size": 64,
        "logical_cpus": 2,
        "files_per_block": 256,
        "quiet": True,
    },
}


def driver(cfg: dict[str, Any], photos: str, out: str, n: int) -> None:
    """One Ray run with ``cfg`` (runs in its own process)."""
    from pillsnap_sdk.defaults import default_bundle_path
    from pillsnap_sdk.integrations.ray import IdentifyBatches
    from pillsnap_sdk.integrations.ray_local import quiet_data_context, start_local_ray

    t0 = time.perf_counter()
    ray = start_local_ray(
        cfg.get("logical_cpus", 2), object_store_mb=cfg.get("object_store_mb", 512)
    )
    t_init = time.perf_counter() - t0
    if cfg.get("quiet", True):
        quiet_data_context()
    ctx = ray.data.DataContext.get_current()
    if cfg.get("max_tasks_in_flight"):
        ctx.max_tasks_in_flight_per_actor = cfg["max_tasks_in_flight"]
    fpb = cfg.get("files_per_block", 0)
    blocks = max(2, -(-n // fpb)) if fpb else None
    if cfg.get("paths"):
        from pillsnap_sdk.batch import expand_inputs

        items = [{"path": item.name} for item in expand_inputs([photos])]
        ds = ray.data.from_items(items, override_num_blocks=blocks)
    else:
        read_args: dict[str, Any] = {}
        if "read_cpus" in cfg:
            read_args["ray_remote_args"] = {"num_cpus": cfg["read_cpus"]}
        ds = ray.data.read_binary_files(
            photos, include_paths=True, override_num_blocks=blocks, **read_args
        )
    t1 = time.perf_counter()
    ds.map_batches(
        IdentifyBatches,
        fn_constructor_kwargs={"bundle": str(default_bundle_path())},
        batch_size=cfg.get("batch_size", 16),
        batch_format=cfg.get("batch_format", "default"),
        num_cpus=cfg.get("actor_cpus", 1),
        compute=ray.data.ActorPoolStrategy(size=cfg.get("actors", 2)),
    ).write_parquet(out)
    t_run = time.perf_counter() - t1
    ray.shutdown()
    print(json.dumps({"init_s": round(t_init, 2), "run_s": round(t_run, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--configs", default="default,tuned")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-pool", action="store_true", help="skip the --workers 2 yardstick")
    ap.add_argument("--out", type=Path, default=None, help="JSON of every run")
    ap.add_argument("--driver", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        cfg, photos, out = json.loads(args.driver)
        driver(cfg, photos, out, args.n)
        return
    CONFIGS["tuned"] = {**CONFIGS["paths"]}
    names = args.configs.split(",")
    work = Path(tempfile.mkdtemp(prefix="batch-ray-tune-"))
    runs: list[dict[str, Any]] = []
    try:
        photos = work / "photos"
        photos.mkdir()
        make_photos(photos, args.n)
        for rnd in range(args.rounds):
            for name in ([] if args.no_pool else ["pool"]) + names:
                out = work / f"out-{name}-{rnd}"
                if name == "pool":
                    cmd = [
                        sys.executable,
                        "-c",
                        "from pillsnap_sdk.cli import main; raise SystemExit(main())",
                        "identify",
                        str(photos),
                        "--jsonl",
                        str(out) + ".jsonl",
                        "--workers",
                        "2",
                    ]
                else:
                    spec = json.dumps([CONFIGS[name], str(photos), str(out)])
                    cmd = [
                        sys.executable,
                        "-m",
                        "benchmarks.batch_ray_tune",
                        "--n",
                        str(args.n),
                        "--driver",
                        spec,
                    ]
                stats, log = run_watched(cmd)
                inner = {}
                for line in log.splitlines():
                    if line.startswith('{"init_s"'):
                        inner = json.loads(line)
                rec = {
                    "config": name,
                    "round": rnd,
                    "wall_s": round(stats.wall_s, 2),
                    "images_per_s": round(args.n / stats.wall_s, 2),
                    "cpu_s": round(stats.cpu_s, 1),
                    "cpu_ms_per_image": round(1000 * stats.cpu_s / args.n, 1),
                    "peak_rss_mb": round(stats.peak_rss / 1e6),
                    "peak_pss_mb": round(stats.peak_pss / 1e6),
                    "processes": stats.processes,
                    **inner,
                    "cpu_by_kind": stats.cpu_by_kind,
                }
                if "run_s" in inner:
                    rec["run_images_per_s"] = round(args.n / inner["run_s"], 2)
                runs.append(rec)
                print(json.dumps(rec), flush=True)
                shutil.rmtree(out, ignore_errors=True)
        text = json.dumps(
            {"n": args.n, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": runs},
            indent=1,
        )
        if args.out:
            args.out.write_text(text + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
