"""The archive benchmark's arithmetic: marginal per-photo costs, Ray's overhead, the table,
and the 1,000,000-photo cluster plan derived from them.

Why a module of its own, with no I/O and no timing: the numbers in docs/scale-out.md must
be reproducible from the benchmark's JSON alone (``python -m benchmarks.batch_report
docs/batch-scale-10k.json``), and the formulas must be testable on made-up numbers
(tests/sdk/test_batch_report.py) without running anything.

Marginal costs: each mode runs on N photos and on a small N0; ``(X(N) - X(N0)) / (N -
N0)`` is the cost of one more photo with start-up (imports, Ray's processes, bundle
verification, ONNX sessions) taken out. That is the number a million-photo plan needs;
start-up is added back once per actor.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ClusterPlan",
    "marginal",
    "markdown",
    "overhead_pct",
    "plan_cluster",
    "summarize",
]

MODE_LABELS = {
    "seq": "sequential (1 process, 2 ort threads)",
    "pool": "`--workers 2` (2 processes, 1 ort thread each)",
    "ray": "Ray local, 2 actors (1 CPU, 1 ort thread each)",
}


def marginal(
    big: dict[str, Any], small: dict[str, Any], n_big: int, n_small: int
) -> dict[str, float]:
    """Per-photo wall and CPU cost between two runs of one mode (start-up cancels out)."""
    if n_big <= n_small:
        raise ValueError(f"need n_big > n_small, got {n_big} and {n_small}")
    dn = n_big - n_small
    wall = (big["wall_s"] - small["wall_s"]) / dn
    cpu = (big["cpu_s"] - small["cpu_s"]) / dn
    return {
        "wall_ms_per_image": round(1000 * wall, 2),
        "images_per_s": round(1 / wall, 2) if wall > 0 else math.inf,
        "cpu_ms_per_image": round(1000 * cpu, 2),
        "startup_wall_s": round(small["wall_s"] - n_small * wall, 2),
        "startup_cpu_s": round(small["cpu_s"] - n_small * cpu, 2),
    }


def overhead_pct(ray: float, pool: float) -> float:
    """How much more Ray costs than the pool, in percent (time or CPU; lower is better)."""
    if pool <= 0:
        raise ValueError(f"pool cost must be > 0, got {pool}")
    return round(100 * (ray / pool - 1), 1)


@dataclass(frozen=True)
class ClusterPlan:
    """A CPU-actor plan for ``photos`` photos, from a measured per-photo CPU cost."""

    photos: int
    cpu_ms_per_image: float
    node_vcpus: int
    actor_cpus: int
    reserved_cpus: int
    nodes: int
    price_per_vcpu_hour: float
    overhead_factor: float
    actors_per_node: int
    images_per_s_per_node: float
    images_per_s: float
    wall_hours: float
    core_hours: float
    billed_vcpu_hours: float
    cost_usd: float


def plan_cluster(
    cpu_ms_per_image: float,
    *,
    photos: int = 1_000_000,
    node_vcpus: int = 16,
    actor_cpus: int = 1,
    reserved_cpus: int = 1,
    nodes: int = 10,
    price_per_vcpu_hour: float = 0.045,
    overhead_factor: float = 1.3,
) -> ClusterPlan:
    """The plan's formulas (docs/scale-out.md quotes them):

    - actors per node  A = floor((node_vcpus - reserved_cpus) / actor_cpus)
    - photos/s per node R = A * actor_cpus * 1000 / cpu_ms_per_image
    - wall hours        = photos / (nodes * R) / 3600
    - core-hours        = photos * cpu_ms_per_image / 1000 / 3600
    - billed vCPU-hours = nodes * node_vcpus * wall hours * overhead_factor
      (whole nodes are billed, reserved CPUs included; the factor covers cluster start,
      actor start-up and the idle tail while the last blocks finish)
    - cost              = billed vCPU-hours * price_per_vcpu_hour
    """
    if cpu_ms_per_image <= 0 or photos <= 0 or nodes <= 0:
        raise ValueError("cpu_ms_per_image, photos and nodes must be > 0")
    actors = (node_vcpus - reserved_cpus) // actor_cpus
    if actors < 1:
        raise ValueError(f"a {node_vcpus}-vCPU node has no room for a {actor_cpus}-CPU actor")
    per_node = actors * actor_cpus * 1000 / cpu_ms_per_image
    wall_h = photos / (nodes * per_node) / 3600
    billed = nodes * node_vcpus * wall_h * overhead_factor
    return ClusterPlan(
        photos=photos,
        cpu_ms_per_image=cpu_ms_per_image,
        node_vcpus=node_vcpus,
        actor_cpus=actor_cpus,
        reserved_cpus=reserved_cpus,
        nodes=nodes,
        price_per_vcpu_hour=price_per_vcpu_hour,
        overhead_factor=overhead_factor,
        actors_per_node=actors,
        images_per_s_per_node=round(per_node, 1),
        images_per_s=round(nodes * per_node, 1),
        wall_hours=round(wall_h, 3),
        core_hours=round(photos * cpu_ms_per_image / 1000 / 3600, 1),
        billed_vcpu_hours=round(billed, 1),
        cost_usd=round(billed * price_per_vcpu_hour, 2),
    )


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Add marginal costs, Ray-vs-pool overheads and the plan to a benchmark report."""
    runs, small = report.get("runs", {}), report.get("runs_small", {})
    n, n0 = report["n"], report.get("n_small", 0)
    margins = {
        m: marginal(runs[m], small[m], n, n0)
        for m in runs
        if "wall_s" in runs[m] and "wall_s" in small.get(m, {}) and n > n0
    }
    out: dict[str, Any] = {"marginal": margins}
    pool, ray = runs.get("pool", {}), runs.get("ray", {})
    if "wall_s" in pool and "wall_s" in ray:
        over = {
            "wall_pct": overhead_pct(ray["wall_s"], pool["wall_s"]),
            "cpu_pct": overhead_pct(ray["cpu_s"], pool["cpu_s"]),
        }
        if "pool" in margins and "ray" in margins:
            mp, mr = margins["pool"], margins["ray"]
            over["marginal_wall_pct"] = overhead_pct(
                mr["wall_ms_per_image"], mp["wall_ms_per_image"]
            )
            over["marginal_cpu_pct"] = overhead_pct(mr["cpu_ms_per_image"], mp["cpu_ms_per_image"])
        out["ray_overhead_vs_pool"] = over
    basis = margins.get("ray") or margins.get("pool")
    if basis is not None and basis["cpu_ms_per_image"] > 0:
        out["plan_1m"] = asdict(plan_cluster(basis["cpu_ms_per_image"]))
    return out


def _fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The report as the markdown docs/scale-out.md shows (one row per mode)."""
    summary = report.get("summary") or summarize(report)
    lines = [
        f"N = {report['n']} photos ({report.get('photos_mb', '?')} MB), {report.get('date', '?')}, "
        f"{report.get('machine', '?')}; load average at start "
        f"{report.get('load_avg_start', ['?'])[0]}"
        + (" (**contended**)" if report.get("contended") else ""),
        "",
        "| mode | wall s | images/s | CPU ms / image | peak RSS MB | peak PSS MB "
        "| marginal images/s | marginal CPU ms / image | records | same names |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, run in report.get("runs", {}).items():
        label = MODE_LABELS.get(mode, mode)
        if "wall_s" not in run:
            lines.append(f"| {label} | failed: {str(run.get('failed', '?'))[:80]} |||||||||")
            continue
        m = summary.get("marginal", {}).get(mode, {})
        lines.append(
            f"| {label} | {run['wall_s']:.1f} | {run['images_per_s']:.2f} "
            f"| {run['cpu_ms_per_image']:.0f} | {run['peak_rss_mb']} "
            f"| {_fmt(run.get('peak_pss_mb'))} | {_fmt(m.get('images_per_s'), '.2f')} "
            f"| {_fmt(m.get('cpu_ms_per_image'), '.0f')} | {run.get('records', '-')} "
            f"| {_fmt(run.get('same_names'))} |"
        )
    if report["n"] < 50 * max(1, report.get("n_small", 1)):
        lines += [
            "",
            f"N is under 50x n-small ({report.get('n_small')}): the start-up run's noise is "
            "spread over few photos, so the marginal columns are rough (use N >= 1000).",
        ]
    if report.get("contended"):
        lines += [
            "",
            "Contended run (other work shared the CPUs): wall-clock columns, and marginal "
            "images/s above all, are not meaningful; compare CPU ms / image.",
        ]
    over = summary.get("ray_overhead_vs_pool")
    if over:
        parts = ", ".join(f"{k.replace('_pct', '')} {v:+.1f} %" for k, v in over.items())
        lines += ["", f"Ray vs `--workers 2`: {parts} (goal: <= +15 %)."]
    plan = summary.get("plan_1m")
    if plan:
        lines += [
            "",
            f"1,000,000 photos at {plan['cpu_ms_per_image']:.0f} CPU ms/photo: "
            f"{plan['nodes']} nodes x {plan['node_vcpus']} vCPU, {plan['actors_per_node']} "
            f"actors/node, {plan['images_per_s']:.0f} photos/s, {plan['wall_hours'] * 60:.0f} "
            f"min, {plan['core_hours']:.0f} core-hours, {plan['billed_vcpu_hours']:.0f} billed "
            f"vCPU-hours, ${plan['cost_usd']:.2f} at ${plan['price_per_vcpu_hour']}/vCPU-hour.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description="Print a batch_scale JSON as markdown.")
    ap.add_argument("json", type=Path)
    args = ap.parse_args()
    print(markdown(json.loads(args.json.read_text())), end="")


if __name__ == "__main__":
    main()
