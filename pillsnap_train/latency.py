"""Latency gate against the versioned device profiles of :mod:`pillsnap_sdk.bench.profiles`.

A profile is only judged on its own device: a CUDA profile needs a CUDA provider that is
really active (checked with ``strict_providers=True``) and, with ``device_match``, a GPU of
that name; a CPU profile needs no more CPUs than the profile's (the affinity mask, not the
host's count). Otherwise the row says "not run" — a missing device is never a pass. The
profiles and the device checks are the SDK bench's, so the two never disagree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pillsnap_sdk import Identifier, PillsnapError
from pillsnap_sdk.bench import profiles as device_profiles

__all__ = ["LatencyRow", "load_profiles", "measure_latency", "run_latency_gate"]


@dataclass(frozen=True)
class LatencyRow:
    profile: str
    case: str
    status: str  # pass | fail | not run
    detail: str
    p50_ms: float | None = None
    p95_ms: float | None = None


def load_profiles(path: Path | None = None) -> dict[str, Any]:
    """The SDK's device profiles (``pillsnap_sdk/bench/devices.yaml``, or ``path``)."""
    return device_profiles.load_profiles(path)


def measure_latency(
    idf: Identifier, image: str | Path, rounds: int = 10, warmup: int = 2
) -> dict[str, float]:
    """p50/p95 of end-to-end ``identify`` and of the classifier stage, in ms."""
    for _ in range(warmup):
        idf.identify(image)
    total, cls = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        res = idf.identify(image)
        total.append((time.perf_counter() - t) * 1000)
        cls.append(
            res.timings_ms.get("classify", 0.0) + res.timings_ms.get("classify_preprocess", 0.0)
        )
    return {
        "p50": float(np.percentile(total, 50)),
        "p95": float(np.percentile(total, 95)),
        "classifier_p50": float(np.percentile(cls, 50)),
        "pills": float(len(res.pills)),
    }


def run_latency_gate(
    bundle: Path,
    cases: Sequence[tuple[str, Path]],
    *,
    rounds: int = 10,
    profiles: dict[str, Any] | None = None,
) -> list[LatencyRow]:
    """Measure every applicable profile on ``cases`` (name, photo); others are 'not run'."""
    prof = (profiles or load_profiles())["profiles"]
    rows: list[LatencyRow] = []
    for name, p in prof.items():
        provider = p.get("provider", "CPUExecutionProvider")
        try:
            idf = Identifier.from_bundle(bundle, providers=[provider], strict_providers=True)
        except PillsnapError as exc:
            rows.append(LatencyRow(name, "*", "not run", f"{provider} not active: {exc}"[:160]))
            continue
        applies, why = device_profiles.profile_applies(p)
        if not applies:
            rows.append(LatencyRow(name, "*", "not run", why))
            continue
        targets: dict[str, float] = p["targets_ms"]
        for case, image in cases:
            m = measure_latency(idf, image, rounds=rounds)
            checks = []
            for key, limit in targets.items():
                if key in ("end_to_end_p50", f"{case}_end_to_end_p50"):
                    checks.append((f"end-to-end p50 {m['p50']:.1f} ms", m["p50"] <= limit, limit))
                elif key == "classifier_p50":
                    checks.append(
                        (
                            f"classifier p50 {m['classifier_p50']:.1f} ms",
                            m["classifier_p50"] <= limit,
                            limit,
                        )
                    )
            if not checks:
                rows.append(
                    LatencyRow(name, case, "not run", "no target for this case", m["p50"], m["p95"])
                )
                continue
            ok = all(c[1] for c in checks)
            detail = "; ".join(f"{c[0]} (target < {c[2]:.0f} ms)" for c in checks)
            rows.append(
                LatencyRow(
                    name,
                    case,
                    "pass" if ok else "fail",
                    f"{detail}; {int(m['pills'])} pill(s)",
                    m["p50"],
                    m["p95"],
                )
            )
    return rows


def rows_as_dicts(rows: Sequence[LatencyRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
