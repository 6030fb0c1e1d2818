"""Peak and settled RSS of one shared Identifier under 1/2/4/8 caller threads.

Each configuration runs in a fresh child process: load the bundle, one warm-up call,
reset the kernel's RSS high-water mark, then N threads each make ``--calls`` identify
calls on the same photo. Reports peak RSS (VmHWM) and RSS after the threads end.

    python scripts/thread_memory.py                       # default bundle, 22-pill photo
    python scripts/thread_memory.py --runs 64             # effectively unbounded runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, threading
from pillsnap_sdk import Identifier
bundle, photo = sys.argv[1], sys.argv[2]
threads, calls, runs = (int(a) for a in sys.argv[3:6])
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
idf = Identifier.from_bundle(bundle, max_concurrent_runs=runs)
data = open(photo, "rb").read()
n = len(idf.identify(data).pills)
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
barrier = threading.Barrier(threads)
def work():
    barrier.wait()
    for _ in range(calls):
        assert len(idf.identify(data).pills) == n
ts = [threading.Thread(target=work) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
peak, after = status("VmHWM:"), status("VmRSS:")
print(json.dumps({"pills": n, "before_mb": before, "peak_mb": peak, "after_mb": after}))
"""


def measure(bundle: Path, photo: Path, threads: int, calls: int, runs: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(bundle), str(photo), str(threads), str(calls), str(runs)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "pushin-pill-edge")
    ap.add_argument("--photo", type=Path, default=REPO / "examples" / "table_22_pills.jpg")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2, help="max_concurrent_runs")
    args = ap.parse_args()
    print("| threads | max_concurrent_runs | RSS before | peak RSS | RSS after |")
    print("|---|---|---|---|---|")
    for n in args.threads:
        r = measure(args.bundle, args.photo, n, args.calls, args.runs)
        print(
            f"| {n} | {args.runs} | {r['before_mb']:.0f} MB | {r['peak_mb']:.0f} MB | "
            f"{r['after_mb']:.0f} MB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
