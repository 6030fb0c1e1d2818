"""Load benchmark of ``pillsnap serve`` over loopback (bounded loops; nothing leaves 127.0.0.1).

Starts the real ``pillsnap serve`` process (default bundle, a fresh keys file) on a free
port and measures, with keep-alive ``http.client`` connections:

1. service overhead at concurrency 1: p50 of HTTP requests vs p50 of the in-process SDK
   (``Identifier.identify(bytes)``) on the same photo, in interleaved blocks;
2. concurrency 1 / 4 / 16 on examples/single_pill.jpg and examples/multi_pills.jpg:
   throughput, p50 / p99, errors (anything but 200);
3. ``--reloads`` admin reloads while 4 clients keep identifying: failed requests;
4. the server's RSS after 1,000 requests and after ``--rss-requests`` in total.

The load generator shares the machine's cores with the server, so absolute throughput is
lower than a separate client box would see; ratios in one run are the comparable figures.

    nice -n 5 .venv/bin/python benchmarks/serve_load.py --out docs/serve-load.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from pillsnap_sdk import Identifier
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.serve.auth import generate_key

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = {"single": ROOT / "examples/single_pill.jpg", "multi": ROOT / "examples/multi_pills.jpg"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _multipart(data: bytes) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    body = (
        (
            f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{b}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={b}"


class Client:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, ctype: str) -> int:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(
                    "POST", path, body, {"Content-Type": ctype, "X-API-Key": self.key}
                )
                resp = self.conn.getresponse()
                resp.read()
                return resp.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    return -1
        return -1


@dataclass
class LoadResult:
    photo: str
    concurrency: int
    requests: int
    seconds: float
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def run_load(port: int, key: str, photo: str, concurrency: int, requests: int) -> LoadResult:
    body, ctype = _multipart(PHOTOS[photo].read_bytes())
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        nonlocal errors
        c = Client(port, key)
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            t0 = time.perf_counter()
            status = c.post("/v1/identify", body, ctype)
            dt = (time.perf_counter() - t0) * 1000
            with lock:
                lat.append(dt)
                errors += status != 200

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    secs = time.perf_counter() - t0
    return LoadResult(
        photo,
        concurrency,
        requests,
        round(secs, 2),
        round(requests / secs, 2),
        round(_pct(lat, 0.5), 1),
        round(_pct(lat, 0.99), 1),
        errors,
    )


def overhead(port: int, key: str, photo: str, samples: int, bundle: Path) -> dict[str, Any]:
    """p50 over HTTP vs p50 in-process at concurrency 1, alternating request by request
    (this machine's load drifts; alternating exposes both sides to the same drift)."""
    data = PHOTOS[photo].read_bytes()
    body, ctype = _multipart(data)
    idf = Identifier.from_bundle(bundle)
    idf.identify(data)
    client = Client(port, key)
    client.post("/v1/identify", body, ctype)
    sdk: list[float] = []
    svc: list[float] = []
    for _ in range(samples):
        t0 = time.perf_counter()
        idf.identify(data)
        sdk.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        assert client.post("/v1/identify", body, ctype) == 200
        svc.append((time.perf_counter() - t0) * 1000)
    p_sdk, p_svc = statistics.median(sdk), statistics.median(svc)
    return {
        "photo": photo,
        "samples_each": len(sdk),
        "sdk_p50_ms": round(p_sdk, 1),
        "service_p50_ms": round(p_svc, 1),
        "ratio": round(p_svc / p_sdk, 3),
    }


def scrape(port: int, key: str) -> dict[str, float]:
    """Sums and counts of the service's request and SDK latency for /v1/identify."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics", headers={"X-API-Key": key})
    text = conn.getresponse().read().decode()
    conn.close()
    want = {
        'pillsnap_request_seconds_sum{route="/v1/identify"}': "request_sum",
        'pillsnap_request_seconds_count{route="/v1/identify"}': "request_count",
        'pillsnap_stage_seconds_sum{stage="sdk_total"}': "sdk_sum",
        'pillsnap_stage_seconds_count{stage="sdk_total"}': "sdk_count",
    }
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in want:
            out[want[name]] = float(value)
    return out


def server_side(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean time inside the server per request vs inside the SDK (the service's own cost)."""
    n = after["request_count"] - before["request_count"]
    req = (after["request_sum"] - before["request_sum"]) / n * 1000
    sdk = (after["sdk_sum"] - before["sdk_sum"]) / (after["sdk_count"] - before["sdk_count"]) * 1000
    return {
        "requests": n,
        "server_mean_ms": round(req, 2),
        "sdk_mean_ms": round(sdk, 2),
        "server_minus_sdk_ms": round(req - sdk, 2),
    }


def reloads_under_load(port: int, key: str, admin: str, n: int) -> dict[str, Any]:
    body, ctype = _multipart(PHOTOS["single"].read_bytes())
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def worker() -> None:
        c = Client(port, key)
        while not stop.is_set():
            status = c.post("/v1/identify", body, ctype)
            with lock:
                counts["ok" if status == 200 else "failed"] += 1

    reload_status: list[int] = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(worker) for _ in range(4)]
        admin_client = Client(port, admin)
        for _ in range(n):
            reload_status.append(admin_client.post("/v1/admin/reload", b"", "application/json"))
        stop.set()
        for f in futures:
            f.result()
    return {
        "reloads": n,
        "reloads_ok": sum(s == 200 for s in reload_status),
        "requests_ok": counts["ok"],
        "requests_failed": counts["failed"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def rss_growth(
    port: int, key: str, pid: int, total: int, report: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Server RSS after 1,000 requests, then after every further 1,000 up to ``total``;
    ``report`` gets the rows so far after each step (a run cut short keeps its data)."""
    proc = psutil.Process(pid)
    done = 0
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    while done < total:
        step = min(1000, total - done)
        r = run_load(port, key, "single", 4, step)
        done += step
        rows.append(
            {
                "requests": done,
                "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                "errors": r.errors,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        base = rows[0]["rss_mb"]
        result = {
            "checkpoints": rows,
            "growth_pct_vs_1000": round(100 * (rows[-1]["rss_mb"] - base) / base, 2),
        }
        report(result)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="requests per load point")
    ap.add_argument("--overhead-samples", type=int, default=200, help="per side, per photo")
    ap.add_argument("--reloads", type=int, default=20)
    ap.add_argument("--rss-requests", type=int, default=10_000, help="0 skips the RSS test")
    ap.add_argument("--max-concurrency", type=int, default=2)
    ap.add_argument(
        "--phases",
        default="overhead,load,reloads,rss",
        help="comma-separated subset of overhead,load,reloads,rss",
    )
    ap.add_argument("--bundle", type=Path, help="bundle to serve (default: models/DEFAULT)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    if not 1 <= args.requests <= 20_000 or not (
        args.rss_requests == 0 or 1000 < args.rss_requests <= 50_000
    ):
        ap.error("--requests 1..20000, --rss-requests 0 or 1001..50000")
    phases = set(args.phases.split(","))
    if phases - {"overhead", "load", "reloads", "rss"}:
        ap.error(f"unknown phase in {args.phases!r}")
    bundle = args.bundle or default_bundle_path()
    if not 1 <= args.overhead_samples <= 5000 or not 0 <= args.reloads <= 1000:
        ap.error("--overhead-samples 1..5000, --reloads 0..1000")

    client_key, client_line = generate_key("bench")
    admin_key, admin_line = generate_key("bench-admin", admin=True)
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        keys.write_text(f"{client_line}\n{admin_line}\n")
        cli = Path(sys.executable).parent / "pillsnap"
        proc = subprocess.Popen(
            [
                str(cli),
                "serve",
                "--port",
                str(port),
                "--api-keys-file",
                str(keys),
                "--max-concurrency",
                str(args.max_concurrency),
                "--max-queue",
                "64",
                "--bundle",
                str(bundle),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PILLSNAP_DRAIN_GRACE_S": "0"},
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("GET", "/readyz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("server did not become ready")
                time.sleep(0.2)
            out: dict[str, Any] = {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
                "load_average_at_start": os.getloadavg(),
                "server": f"pillsnap serve --max-concurrency {args.max_concurrency} "
                f"--max-queue 64 --bundle {bundle}",
            }

            def emit(key: str, value: Any) -> None:
                """Print and save after every phase, so an interrupted run keeps its data."""
                out[key] = value
                print(json.dumps({key: value}), flush=True)
                if args.out:
                    args.out.write_text(json.dumps(out, indent=2) + "\n")

            overheads = []
            for p in PHOTOS if "overhead" in phases else ():
                m0 = scrape(port, client_key)
                row = overhead(port, client_key, p, args.overhead_samples, bundle)
                row["server_side"] = server_side(m0, scrape(port, client_key))
                overheads.append(row)
                emit("overhead", overheads)
            loads: list[dict[str, Any]] = []
            for photo in PHOTOS if "load" in phases else ():
                for conc in (1, 4, 16):
                    loads.append(asdict(run_load(port, client_key, photo, conc, args.requests)))
                    emit("load", loads)
            if "reloads" in phases:
                emit("reloads", reloads_under_load(port, client_key, admin_key, args.reloads))
            if "rss" in phases and args.rss_requests:
                rss_growth(port, client_key, proc.pid, args.rss_requests, lambda v: emit("rss", v))
            emit("load_average_at_end", os.getloadavg())
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
