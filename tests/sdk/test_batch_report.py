"""The archive benchmark's arithmetic (benchmarks/batch_report.py), on made-up numbers.

No timing: these pin the formulas docs/scale-out.md quotes, so that a number in the doc can
be recomputed from the benchmark's JSON and a wrong formula fails here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "batch_report", REPO / "benchmarks" / "batch_report.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


br = _load()


def _run(wall: float, cpu: float, n: int) -> dict[str, float]:
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "images_per_s": n / wall,
        "cpu_ms_per_image": 1000 * cpu / n,
        "peak_rss_mb": 500,
        "peak_pss_mb": 400,
        "records": n,
        "same_names": True,
    }


def test_marginal_takes_start_up_out() -> None:
    # 10 s start-up and 5 s CPU of start-up, then 50 ms wall / 80 ms CPU per photo
    big, small = _run(10 + 1000 * 0.05, 5 + 1000 * 0.08, 1000), _run(10 + 0.5, 5 + 0.8, 10)
    m = br.marginal(big, small, 1000, 10)
    assert m["wall_ms_per_image"] == pytest.approx(50)
    assert m["images_per_s"] == pytest.approx(20)
    assert m["cpu_ms_per_image"] == pytest.approx(80)
    assert m["startup_wall_s"] == pytest.approx(10) and m["startup_cpu_s"] == pytest.approx(5)
    with pytest.raises(ValueError, match="n_big > n_small"):
        br.marginal(big, small, 10, 10)


def test_overhead_is_relative_to_the_pool() -> None:
    assert br.overhead_pct(115, 100) == 15.0
    assert br.overhead_pct(90, 100) == -10.0
    with pytest.raises(ValueError):
        br.overhead_pct(1, 0)


def test_cluster_plan_formulas() -> None:
    p = br.plan_cluster(
        100.0,
        photos=1_000_000,
        node_vcpus=16,
        actor_cpus=1,
        nodes=10,
        reserved_cpus=1,
        price_per_vcpu_hour=0.05,
        overhead_factor=1.0,
    )
    assert p.actors_per_node == 15
    assert p.images_per_s_per_node == pytest.approx(150)  # 15 CPUs x 10 photos/s
    assert p.images_per_s == pytest.approx(1500)
    assert p.wall_hours == pytest.approx(1_000_000 / 1500 / 3600, abs=1e-3)
    assert p.core_hours == pytest.approx(27.8, abs=0.05)  # 1e6 x 0.1 s / 3600
    assert p.billed_vcpu_hours == pytest.approx(160 * 1_000_000 / 1500 / 3600, abs=0.1)
    assert p.cost_usd == pytest.approx(p.billed_vcpu_hours * 0.05, abs=0.01)
    two = br.plan_cluster(100.0, actor_cpus=2, node_vcpus=16, reserved_cpus=1)
    assert two.actors_per_node == 7
    with pytest.raises(ValueError, match="no room"):
        br.plan_cluster(100.0, node_vcpus=2, actor_cpus=2, reserved_cpus=1)
    with pytest.raises(ValueError):
        br.plan_cluster(0.0)


def test_summary_and_markdown_from_a_report() -> None:
    n, n0 = 1000, 20
    report = {
        "n": n,
        "n_small": n0,
        "photos_mb": 80.0,
        "date": "2026-12-02 12:00 UTC",
        "machine": "x86_64 2 CPUs",
        "load_avg_start": [0.1, 0.1, 0.1],
        "contended": False,
        "runs": {
            "seq": _run(5 + n * 0.1, 3 + n * 0.1, n),
            "pool": _run(5 + n * 0.05, 3 + n * 0.1, n),
            "ray": _run(15 + n * 0.055, 20 + n * 0.11, n),
        },
        "runs_small": {
            "seq": _run(5 + n0 * 0.1, 3 + n0 * 0.1, n0),
            "pool": _run(5 + n0 * 0.05, 3 + n0 * 0.1, n0),
            "ray": _run(15 + n0 * 0.055, 20 + n0 * 0.11, n0),
        },
    }
    s = br.summarize(report)
    assert s["marginal"]["ray"]["cpu_ms_per_image"] == pytest.approx(110)
    over = s["ray_overhead_vs_pool"]
    assert over["marginal_wall_pct"] == pytest.approx(10.0)
    assert over["marginal_cpu_pct"] == pytest.approx(10.0)
    assert over["wall_pct"] == pytest.approx(100 * ((15 + 55) / (5 + 50) - 1), abs=0.1)
    # the plan is built on Ray's marginal CPU per photo (what a cluster pays)
    assert s["plan_1m"]["cpu_ms_per_image"] == pytest.approx(110)
    md = br.markdown({**report, "summary": s})
    assert md.count("\n| ") == 4  # header + 3 modes
    assert "marginal_wall +10.0 %" in md and "goal: <= +15 %" in md
    assert "1,000,000 photos at 110 CPU ms/photo" in md
    failed = {**report, "runs": {**report["runs"], "ray": {"failed": "exit 1: boom"}}}
    md = br.markdown(failed)
    assert "failed: exit 1: boom" in md and "Ray vs" not in md
