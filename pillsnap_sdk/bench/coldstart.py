"""Cold start in a fresh interpreter: import, ``from_bundle``, first result, peak RSS.

Why a fresh process: a warm benchmark process has already paid the imports, the session
builds and the first-run allocations, and its memory high-water mark belongs to the
benchmark; a serverless or CLI user pays all of them on every start.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..bundle.loader import Bundle, load_bundle
from ..bundle.variants import select_precision
from ..errors import PillsnapError
from ..pipeline import Identifier
from .scenes import Scene, is_synthetic, with_thresholds

__all__ = ["ColdStart", "measure_cold_start", "peak_rss_mb"]

#: The folder this ``pillsnap_sdk`` was imported from (site-packages for a wheel, the
#: checkout for an editable or ``PYTHONPATH`` run): the child imports the same code.
_IMPORT_ROOT = Path(__file__).resolve().parents[2]
#: The child's clock starts before its first import, so ``import_ms`` is the real cost.
_CHILD = (
    "import sys, time; t0 = time.perf_counter(); import pillsnap_sdk.bench.coldstart as c; "
    "raise SystemExit(c._child(t0, sys.argv[1:]))"
)


@dataclass
class ColdStart:
    """A fresh process: import, ``from_bundle`` and the first result; then peak RSS."""

    import_ms: float
    load_ms: float
    first_result_ms: float
    cold_start_ms: float
    peak_rss_mb: float | None
    runs: int


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB.

    Linux: ``VmHWM`` of ``/proc/self/status``, which belongs to the process image after
    ``exec``. (``ru_maxrss`` is not used there: it inherits the parent's peak across
    fork+exec, so a child started from a 3 GB benchmark process would report 3 GB.)
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _child(t0: float, argv: list[str]) -> int:
    """Runs in the fresh interpreter: prints one JSON line of timings and peak RSS."""
    bundle_path, photo_path, max_det, repeats = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    t1 = time.perf_counter()
    # The parent's classifier precision, named explicitly: the child measures the model the
    # parent benches (an int8 run's cold start is int8's), whatever its environment says.
    bundle = select_precision(load_bundle(bundle_path), argv[4])
    if max_det > 0:
        bundle = with_thresholds(bundle, max_detections=max_det)
    idf = Identifier(bundle)
    t2 = time.perf_counter()
    data = photo_path.read_bytes()
    idf.identify(data)
    t3 = time.perf_counter()
    for _ in range(repeats):
        idf.identify(data)
    print(
        json.dumps(
            {
                "import_ms": (t1 - t0) * 1000.0,
                "load_ms": (t2 - t1) * 1000.0,
                "first_result_ms": (t3 - t2) * 1000.0,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )
    return 0


def measure_cold_start(
    bundle: Bundle, scene: Scene, *, runs: int = 3, repeats: int = 10
) -> ColdStart:
    """Median of ``runs`` fresh processes; peak RSS after ``repeats`` more calls."""
    max_det = scene.expected_pills if is_synthetic(bundle.manifest) else 0
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="pillsnap-bench-") as tmp:
        photo = Path(tmp) / "photo.jpg"
        photo.write_bytes(scene.data)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(_IMPORT_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        for _ in range(runs):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _CHILD,
                    str(bundle.source),
                    str(photo),
                    str(max_det),
                    str(repeats),
                    bundle.manifest.classifier.precision,
                ],
                capture_output=True,
                text=True,
                timeout=600,
                env=env,
                check=False,
            )
            if proc.returncode != 0:
                raise PillsnapError(f"cold-start child failed: {proc.stderr.strip()[-500:]}")
            samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    def med(key: str) -> float:
        return float(statistics.median(s[key] for s in samples))

    rss = [s["peak_rss_mb"] for s in samples if s.get("peak_rss_mb") is not None]
    return ColdStart(
        import_ms=med("import_ms"),
        load_ms=med("load_ms"),
        first_result_ms=med("first_result_ms"),
        cold_start_ms=float(
            statistics.median(s["load_ms"] + s["first_result_ms"] for s in samples)
        ),
        peak_rss_mb=max(rss) if rss else None,
        runs=runs,
    )
