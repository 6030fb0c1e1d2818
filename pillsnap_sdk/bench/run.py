"""One bench run: which measurements, in which order, on which bundle and photos.

Why this order: the SDK-vs-floor passes come first because the gate and the device
profiles are decided on them (and ``--quick``, the CI subset, stops there); peers,
variants, throughput and cold start follow only in a full run.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from ..bundle.loader import Bundle, load_bundle
from ..bundle.manifest import BundleManifest
from ..pipeline import Identifier
from ..version import __version__
from .coldstart import measure_cold_start
from .floor import Floor
from .gate import gate_against_baseline, gate_metrics
from .peers import GOAL_VS_PEERS, measure_peers
from .profiles import check_profiles, cpu_count, load_profiles
from .report import BenchReport
from .scenes import MULTI, SINGLE, Scene, find_scenes, is_synthetic, scene_bundle
from .stages import GOAL_E2E_VS_FLOOR, SceneResult, measure_scene
from .throughput import measure_throughput
from .variants import measure_variants

__all__ = ["bundle_key", "run_bench"]


def bundle_key(manifest: BundleManifest) -> str:
    """How baselines and reports name a bundle: ``name@version``."""
    return f"{manifest.name}@{manifest.version}"


def _program() -> str:
    """How this run was started, for the record (``python -m`` shows up as a file path)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if argv0.name == "__main__.py" and argv0.parent.name == "bench":
        return "python -m pillsnap_sdk.bench"
    return argv0.name


def _meta(bundle: Bundle, rounds: int, quick: bool, providers: Sequence[str]) -> dict[str, Any]:
    m = bundle.manifest
    files = [m.classifier.file] + ([m.detector.file] if m.detector else [])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([_program(), *sys.argv[1:]]),
        "bundle": {
            "key": bundle_key(m),
            "source": str(bundle.source),
            "synthetic_weights": is_synthetic(m),
            "models_mb": {f: round(len(bundle.model_bytes(f)) / 1e6, 2) for f in files},
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": cpu_count(),
            "python": platform.python_version(),
        },
        "versions": {
            "pillsnap": __version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
        },
        "providers": list(providers),
        "rounds": rounds,
        "quick": quick,
        "goals": {"multi_e2e_vs_floor_max": GOAL_E2E_VS_FLOOR, "vs_peers_max": GOAL_VS_PEERS},
    }


def run_bench(
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
) -> BenchReport:
    """Measure a bundle. ``quick`` = SDK vs floor on both photos only (the CI subset).

    With ``baseline``, the gated ratios are compared and re-measured once on failure
    (:func:`~.gate.run_gate`); the verdict lands in ``report.gate``. ``extra_passes``
    repeats the SDK-vs-floor pass (for recording a baseline from several passes); every
    pass's gated ratios are kept in ``report.meta["gate_metric_passes"]``.
    """
    say = progress or (lambda _msg: None)
    bundle = load_bundle(bundle_path)
    provs = list(providers) if providers else ["CPUExecutionProvider"]
    scenes = find_scenes(images)
    report = BenchReport(meta=_meta(bundle, rounds, quick, provs))
    report.meta["scenes"] = {s.name: s.source for s in scenes}
    idfs: dict[str, Identifier] = {}
    floors: dict[str, tuple[Floor, Floor]] = {}
    for sc in scenes:
        b = scene_bundle(bundle, sc)
        idfs[sc.name] = Identifier(b, providers=provs)
        floors[sc.name] = (Floor(b, provs), Floor(b, provs, sdk_options=True))
    passes: list[list[SceneResult]] = []

    def scene_rounds(sc: Scene) -> int:
        # The single-pill photo costs ~1/4 of the multi-pill one and its ratio is the
        # noisier (it is ~1.0 +- detector jitter): give it twice the rounds, cheaply.
        return rounds * 2 if sc.name == SINGLE else rounds

    def scene_pass(names: Sequence[str] = ()) -> list[SceneResult]:
        """Measure the named scenes (all when empty); remember the pass for the profiles."""
        out = []
        for sc in scenes:
            if names and sc.name not in names:
                continue
            n = scene_rounds(sc)
            say(f"scene {sc.name}: SDK vs floors, {n} rounds")
            out.append(measure_scene(idfs[sc.name], floors[sc.name], sc, n))
        passes.append(out)
        return out

    report.scenes = scene_pass()
    for _ in range(extra_passes):
        scene_pass()
    report.meta["gate_metric_passes"] = [gate_metrics(p) for p in passes]
    if baseline is not None:
        report.gate = gate_against_baseline(
            baseline, bundle_key(bundle.manifest), report.scenes, scene_pass, tolerance
        )

    profiles = load_profiles(profiles_file)
    report.meta["profiles_source"] = profiles.get("source", "")
    say("device profiles")
    report.profiles = check_profiles(profiles, bundle, scenes, passes, rounds, only=profile)
    failing = sorted({t.scene for t in report.profiles if t.status == "fail"})
    if baseline is not None and failing and len(passes) < 2:
        say(f"profile target missed on {', '.join(failing)}: measuring once more")
        scene_pass(failing)
        report.profiles = check_profiles(profiles, bundle, scenes, passes, rounds, only=profile)
    if quick:
        return report

    multi = next(s for s in scenes if s.name == MULTI)
    if peers:
        for sc in scenes:
            say(f"scene {sc.name}: peers")
            report.peers += measure_peers(scene_bundle(bundle, sc), idfs[sc.name], sc, rounds)
    if bundle.manifest.variants:
        say("precision variants")
        report.variants = measure_variants(bundle, multi, max(3, rounds // 2), providers=provs)
    say("throughput")
    report.throughput = measure_throughput(idfs[MULTI], multi, rounds=2)
    say("cold start (fresh processes)")
    report.cold_start = measure_cold_start(bundle, multi)
    return report
