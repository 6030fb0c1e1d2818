"""Archive throughput: sequential vs ``--workers N`` vs Ray Data actors, on one machine.

    python benchmarks/batch_scale.py --n 1000 --out /tmp/batch-scale.json

Builds N photos (copies of examples/*.jpg re-encoded at 5 sizes, 0.5x-2x, 100 per folder),
then runs each mode as its own process tree and reports wall time, images/s and the peak of
the summed RSS of the whole tree (sampled every 0.1 s; Ray's raylet/GCS/workers included,
shared pages counted once per process, so Ray's figure is an upper bound). Every mode's
output is checked: one record per photo, and the same pill names as the sequential run.
A script, not a pytest benchmark: one round takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)


def make_photos(root: Path, n: int) -> None:
    variants: list[bytes] = []
    for src in sorted((REPO / "examples").glob("*.jpg")):
        img = Image.open(src).convert("RGB")
        for s in SCALES:
            tmp = root / "variant.jpg"
            img.resize((round(img.width * s), round(img.height * s))).save(tmp, quality=90)
            variants.append(tmp.read_bytes())
    tmp.unlink()
    for i in range(n):
        d = root / f"d{i // 100:04d}"
        d.mkdir(exist_ok=True)
        (d / f"p{i:06d}.jpg").write_bytes(variants[i % len(variants)])


def run_tree(cmd: list[str]) -> tuple[float, float, int, str]:
    """Run ``cmd``; return (wall s, CPU s, peak summed RSS bytes of its process tree, log).

    CPU seconds (user + sys of every reaped descendant) are what a busy, shared machine
    distorts least, and what a cluster bill is made of.
    """
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        peak = max(peak, total)
        time.sleep(0.1)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {(out + err).strip()[-500:]}")
    return wall, cpu, peak, out + err


def names_jsonl(path: Path) -> dict[str, list[str]]:
    got = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        res = rec.get("result")
        got[Path(rec["image"]).name] = sorted(
            p["candidates"][0]["name"] for p in (res["pills"] if res else [])
        )
    return got


def names_parquet(folder: Path) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(folder).to_pydict()
    got = {}
    for path, result in zip(table["path"], table["result"], strict=True):
        res = json.loads(result) if result else None
        got[Path(path).name] = sorted(
            p["candidates"][0]["name"] for p in (res["pills"] if res else [])
        )
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default="seq,pool,ray")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    bindir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="batch-scale-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        make_photos(photos, args.n)
        size_mb = sum(f.stat().st_size for f in photos.rglob("*.jpg")) / 1e6
        report: dict[str, object] = {
            "n": args.n,
            "photos_mb": round(size_mb, 1),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.processor()}",
            "load_avg_start": os.getloadavg(),
            "runs": {},
        }
        runs: dict[str, dict[str, float]] = report["runs"]  # type: ignore[assignment]
        answers: dict[str, dict[str, list[str]]] = {}
        for mode in args.modes.split(","):
            if mode == "seq":
                out = work / "seq.jsonl"
                cmd = [str(bindir / "pillsnap"), "identify", str(photos), "--jsonl", str(out)]
            elif mode == "pool":
                out = work / "pool.jsonl"
                cmd = [str(bindir / "pillsnap"), "identify", str(photos), "--jsonl", str(out)]
                cmd += ["--workers", str(args.workers)]
            elif mode == "ray":
                out = work / "ray-parquet"
                cmd = [sys.executable, str(REPO / "examples" / "ray_batch.py"), str(photos)]
                cmd += [str(out), "--actors", str(args.workers)]
            else:
                raise SystemExit(f"unknown mode {mode}")
            try:
                wall, cpu, peak, log = run_tree(cmd)
            except RuntimeError as exc:  # record it, and still measure the other modes
                runs[mode] = {"failed": str(exc)}  # type: ignore[dict-item]
                print(mode, "FAILED", exc, flush=True)
                continue
            answers[mode] = names_parquet(out) if mode == "ray" else names_jsonl(out)
            runs[mode] = {
                "wall_s": round(wall, 1),
                "images_per_s": round(args.n / wall, 2),
                "cpu_s": round(cpu, 1),
                "cpu_ms_per_image": round(1000 * cpu / args.n),
                "peak_rss_mb": round(peak / 1e6),
                "records": len(answers[mode]),
                "load_avg_after": os.getloadavg()[0],
            }
            print(mode, runs[mode], log.strip().splitlines()[-1:], flush=True)
        base = next(iter(answers.values()), {})
        report["same_names_as_first_mode"] = {m: a == base for m, a in answers.items()}
        if "wall_s" in runs.get("pool", {}) and "wall_s" in runs.get("ray", {}):
            report["ray_overhead_vs_pool_pct"] = round(
                100 * (runs["ray"]["wall_s"] / runs["pool"]["wall_s"] - 1), 1
            )
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
