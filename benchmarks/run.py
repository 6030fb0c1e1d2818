"""One full benchmark run: ``pillsnap bench``'s passes plus peers, variants and the gate.

Order as before the split: SDK-vs-floor passes (extra ones for a baseline), the regression
gate on them (re-measuring failing scenes once), the device profiles (re-measured once when
a gated run misses a target), then, unless ``quick``, peers, precision variants, throughput
and cold start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pillsnap_sdk.bench.profiles import load_profiles
from pillsnap_sdk.bench.run import BenchSession, bench_meta, bundle_key
from pillsnap_sdk.bench.scenes import scene_bundle
from pillsnap_sdk.bench.stages import GOAL_E2E_VS_FLOOR
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.bundle.variants import select_precision

from .gate import gate_against_baseline, gate_metrics
from .peers import GOAL_VS_PEERS, measure_peers
from .photos import bench_scenes
from .report import FullReport
from .variants import measure_variants

__all__ = ["run_full_bench"]


def run_full_bench(
    bundle_path: str | Path,
    *,
    rounds: int = 20,
    quick: bool = False,
    peers: bool = True,
    images: Path | None = None,
    providers: Sequence[str] | None = None,
    profiles_file: Path | None = None,
    profile: str | None = None,
    baseline: Path | None = None,
    tolerance: float | None = None,
    extra_passes: int = 0,
    progress: Callable[[str], None] | None = None,
    precision: str | None = None,
) -> FullReport:
    """Measure a bundle. ``quick`` = SDK vs floor on both photos only (the CI subset).

    With ``baseline``, the gated ratios are compared and re-measured once on failure
    (:func:`~.gate.run_gate`); the verdict lands in ``report.gate``. ``extra_passes``
    repeats the SDK-vs-floor pass (for recording a baseline from several passes); every
    pass's gated ratios are kept in ``report.meta["gate_metric_passes"]``.
    """
    say = progress or (lambda _msg: None)
    shipped = load_bundle(bundle_path)
    bundle = select_precision(shipped, precision)
    provs = list(providers) if providers else ["CPUExecutionProvider"]
    scenes = bench_scenes(images)
    goals = {"multi_e2e_vs_floor_max": GOAL_E2E_VS_FLOOR, "vs_peers_max": GOAL_VS_PEERS}
    report = FullReport(meta=bench_meta(bundle, rounds, quick, provs, goals))
    report.meta["scenes"] = {s.name: s.source for s in scenes}
    session = BenchSession(bundle, scenes, rounds, provs, say)
    report.scenes = session.scene_pass()
    report.floor_search = session.floor_search_summary()
    for _ in range(extra_passes):
        session.scene_pass()
    report.meta["gate_metric_passes"] = [gate_metrics(p) for p in session.passes]
    if baseline is not None:
        report.gate = gate_against_baseline(
            baseline, bundle_key(bundle.manifest), report.scenes, session.scene_pass, tolerance
        )

    profs = load_profiles(profiles_file)
    report.meta["profiles_source"] = profs.get("source", "")
    report.profiles = session.check_profiles(profs, profile)
    failing = sorted({t.scene for t in report.profiles if t.status == "fail"})
    if baseline is not None and failing and len(session.passes) < 2:
        say(f"profile target missed on {', '.join(failing)}: measuring once more")
        session.scene_pass(failing)
        report.profiles = session.check_profiles(profs, profile)
    if quick:
        return report

    multi = session.multi()
    if peers:
        for sc in scenes:
            say(f"scene {sc.name}: peers")
            report.peers += measure_peers(
                scene_bundle(bundle, sc), session.idfs[sc.name], sc, rounds
            )
    if shipped.manifest.variants:  # always against the bundle's own fp32 classifier
        say("precision variants")
        report.variants = measure_variants(shipped, multi, max(3, rounds // 2), providers=provs)
    session.throughput_and_cold_start(report)
    return report
