"""Archive throughput: sequential vs ``--workers N`` vs Ray Data actors, on one machine.

    python -m benchmarks.batch_scale --n 10000 --out docs/batch-scale-10k.json

Builds N photos (copies of examples/*.jpg re-encoded at 5 sizes, 0.5x-2x, 100 per folder)
in a temporary folder, then runs each mode as its own process tree:

- ``seq``:  ``pillsnap identify DIR --jsonl OUT`` (one process, onnxruntime threads = CPUs)
- ``pool``: the same with ``--workers 2`` (2 worker processes, 1 thread each)
- ``ray``:  ``examples/ray_batch.py DIR OUT --actors 2`` (a loopback Ray, 2 actors of 1 CPU,
  the example's tuned settings; Parquet out)

Each is watched by :mod:`benchmarks.batch_tree`: wall time, CPU seconds of the whole tree
(by process kind: where Ray's time goes), peak summed RSS and PSS. Every mode also runs on
``--n-small`` photos, so that :mod:`benchmarks.batch_report` can take start-up out
(marginal cost per photo) and derive the 1,000,000-photo plan. Every mode's output is
checked: one record per photo and the same pill names as the first mode. Writes the JSON
(``--out``) and its markdown table beside it (``.md``).
A script, not a pytest benchmark: one round on 10,000 photos takes about half an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.batch_report import markdown, summarize
from benchmarks.batch_tree import run_watched

REPO = Path(__file__).resolve().parent.parent
SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)
CLI = [sys.executable, "-c", "from pillsnap_sdk.cli import main; raise SystemExit(main())"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def make_photos(root: Path, n: int) -> None:
    """``n`` photos under ``root``: the example photos at 5 sizes, round-robin."""
    variants: list[bytes] = []
    tmp = root / "variant.jpg"
    for src in sorted((REPO / "examples").glob("*.jpg")):
        img = Image.open(src).convert("RGB")
        for s in SCALES:
            img.resize((round(img.width * s), round(img.height * s))).save(tmp, quality=90)
            variants.append(tmp.read_bytes())
    tmp.unlink()
    for i in range(n):
        d = root / f"d{i // 100:04d}"
        d.mkdir(exist_ok=True)
        (d / f"p{i:06d}.jpg").write_bytes(variants[i % len(variants)])


def _names(res: dict[str, Any] | None) -> list[str]:
    return sorted(p["candidates"][0]["name"] for p in (res["pills"] if res else []))


def names_jsonl(path: Path) -> dict[str, list[str]]:
    got = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        got[Path(rec["image"]).name] = _names(rec.get("result"))
    return got


def names_parquet(folder: Path) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(folder).to_pydict()
    return {
        Path(path).name: _names(json.loads(result) if result else None)
        for path, result in zip(table["path"], table["result"], strict=True)
    }


def command(mode: str, photos: Path, out: Path, workers: int) -> list[str]:
    if mode == "seq":
        return [*CLI, "identify", str(photos), "--jsonl", str(out)]
    if mode == "pool":
        return [*CLI, "identify", str(photos), "--jsonl", str(out), "--workers", str(workers)]
    if mode == "ray":
        example = str(REPO / "examples" / "ray_batch.py")
        return [sys.executable, example, str(photos), str(out), "--actors", str(workers)]
    raise SystemExit(f"unknown mode {mode!r} (seq, pool, ray)")


def measure(mode: str, photos: Path, out: Path, n: int, workers: int) -> dict[str, Any]:
    """Run one mode on ``photos``; its numbers, or ``{"failed": why}``."""
    try:
        stats, log = run_watched(command(mode, photos, out, workers))
    except RuntimeError as exc:  # record it, and still measure the other modes
        return {"failed": str(exc)}
    names = names_parquet(out) if mode == "ray" else names_jsonl(out)
    return {
        "wall_s": round(stats.wall_s, 2),
        "images_per_s": round(n / stats.wall_s, 2),
        "cpu_s": round(stats.cpu_s, 2),
        "cpu_ms_per_image": round(1000 * stats.cpu_s / n, 1),
        "peak_rss_mb": round(stats.peak_rss / 1e6),
        "peak_pss_mb": round(stats.peak_pss / 1e6),
        "processes": stats.processes,
        "records": len(names),
        "cpu_by_kind": stats.cpu_by_kind,
        "load_avg_after": round(os.getloadavg()[0], 2),
        "last_log_line": (log.strip().splitlines() or [""])[-1][-200:],
        "_names": names,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="photos in the measured run")
    ap.add_argument("--n-small", type=int, default=20, help="photos in the start-up run")
    ap.add_argument("--workers", type=int, default=2, help="pool workers and Ray actors")
    ap.add_argument("--modes", default="seq,pool,ray")
    ap.add_argument("--out", type=Path, default=None, help="JSON (and .md beside it)")
    args = ap.parse_args()
    modes = args.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="batch-scale-"))
    cpus = os.cpu_count() or 1
    load = os.getloadavg()
    report: dict[str, Any] = {
        "n": args.n,
        "n_small": args.n_small,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {cpus} CPUs, {_cpu_model()}",
        "command": " ".join(["python -m benchmarks.batch_scale", *sys.argv[1:]]),
        "load_avg_start": [round(x, 2) for x in load],
        # a load above half the cores means other work shared the CPUs: compare ratios
        "contended": load[0] > cpus / 2,
        "runs": {},
        "runs_small": {},
    }
    try:
        for key, n in (("runs_small", args.n_small), ("runs", args.n)):
            photos = work / f"photos-{n}"
            photos.mkdir()
            make_photos(photos, n)
            if key == "runs":
                report["photos_mb"] = round(
                    sum(f.stat().st_size for f in photos.rglob("*.jpg")) / 1e6, 1
                )
            answers: dict[str, dict[str, list[str]]] = {}
            for mode in modes:
                out = work / f"{mode}-{n}" if mode == "ray" else work / f"{mode}-{n}.jsonl"
                run = measure(mode, photos, out, n, args.workers)
                if "_names" in run:
                    answers[mode] = run.pop("_names")
                    first = next(iter(answers.values()))
                    run["same_names"] = answers[mode] == first and len(first) == n
                report[key][mode] = run
                print(key, mode, json.dumps(run), flush=True)
            shutil.rmtree(photos, ignore_errors=True)
        report["summary"] = summarize(report)
        text = json.dumps(report, indent=2)
        print(text)
        print(markdown(report))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
            args.out.with_suffix(".md").write_text(markdown(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
