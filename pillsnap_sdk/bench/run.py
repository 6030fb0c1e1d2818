"""One bench run: which measurements, in which order, on which bundle and photos.

Why this order: the SDK-vs-floor passes come first because the device profiles are
decided on them (and ``--quick`` stops there); throughput and cold start follow only in a
full run. :class:`BenchSession` holds what the passes share, so the repository's
``benchmarks`` package (peers, precision variants, the regression gate) runs the same
passes and adds its measurements between them.
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
from ..bundle.variants import select_precision
from ..errors import InvalidArgumentError
from ..image import load_image
from ..pipeline import Identifier
from ..version import __version__
from .bigphoto import measure_big_photo
from .coldstart import measure_cold_start
from .floor import Floor
from .floorsearch import FloorSearch, provider_is_cpu, search_floor
from .profiles import TargetCheck, check_profiles, cpu_count, load_profiles
from .report import BenchReport
from .scenes import MULTI, SINGLE, Scene, crops_for, find_scenes, is_synthetic, scene_bundle
from .stages import GOAL_E2E_VS_FLOOR, SceneResult, measure_scene
from .throughput import measure_throughput

__all__ = ["BenchSession", "bench_meta", "bundle_key", "run_bench"]


def bundle_key(manifest: BundleManifest) -> str:
    """How baselines and reports name a bundle: ``name@version``, plus ``+int8`` (the
    classifier's precision) when a variant other than fp32 is measured: a baseline
    recorded for one precision must never gate another."""
    precision = manifest.classifier.precision
    suffix = "" if precision == "fp32" else f"+{precision}"
    return f"{manifest.name}@{manifest.version}{suffix}"


def _program() -> str:
    """How this run was started, for the record (``python -m`` shows up as a file path)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if argv0.name == "__main__.py":
        return f"python -m {argv0.parent.name}"
    return argv0.name


def bench_meta(
    bundle: Bundle, rounds: int, quick: bool, providers: Sequence[str], goals: dict[str, float]
) -> dict[str, Any]:
    """The run's record header: date, command, bundle, machine, versions, goals."""
    m = bundle.manifest
    files = [m.classifier.file] + ([m.detector.file] if m.detector else [])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([_program(), *sys.argv[1:]]),
        "bundle": {
            "key": bundle_key(m),
            "source": str(bundle.source),
            "precision": m.classifier.precision,
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
        "goals": goals,
    }


class BenchSession:
    """One bundle opened for every scene: Identifiers, floors and the passes measured.

    ``passes`` keeps every SDK-vs-floor pass; the device profiles take each scene's best.
    """

    def __init__(
        self,
        bundle: Bundle,
        scenes: Sequence[Scene],
        rounds: int,
        providers: Sequence[str],
        progress: Callable[[str], None],
    ) -> None:
        self.bundle, self.scenes, self.rounds, self.say = bundle, list(scenes), rounds, progress
        self.providers = list(providers)
        self.idfs: dict[str, Identifier] = {}
        self.floors: dict[str, tuple[Floor, Floor]] = {}
        self.floor_searches: dict[str, FloorSearch] = {}
        for sc in self.scenes:
            b = scene_bundle(bundle, sc)
            self.idfs[sc.name] = Identifier(b, providers=self.providers)
        self.passes: list[list[SceneResult]] = []

    def floors_for(self, sc: Scene) -> tuple[Floor, Floor]:
        """The scene's floors, made on first use: the best bare configuration found on
        this photo's crops (:func:`~.floorsearch.search_floor`; CPU provider only, others
        keep onnxruntime's defaults) and the SDK-options floor."""
        if sc.name not in self.floors:
            b = scene_bundle(self.bundle, sc)
            config = None
            if provider_is_cpu(self.providers):
                self.say(f"scene {sc.name}: searching the fastest bare onnxruntime floor")
                idf = self.idfs[sc.name]
                rgb = load_image(sc.data)
                found = search_floor(
                    b, self.providers, rgb, crops_for(idf, rgb, idf.identify(sc.data))
                )
                self.floor_searches[sc.name] = found
                config = found.best
            self.floors[sc.name] = (
                Floor(b, self.providers, config=config),
                Floor(b, self.providers, sdk_options=True),
            )
        return self.floors[sc.name]

    def scene_rounds(self, sc: Scene) -> int:
        # The single-pill photo costs ~1/4 of the multi-pill one and its ratio is the
        # noisier (it is ~1.0 +- detector jitter): give it twice the rounds, cheaply.
        return self.rounds * 2 if sc.name == SINGLE else self.rounds

    def scene_pass(self, names: Sequence[str] = ()) -> list[SceneResult]:
        """Measure the named scenes (all when empty); remember the pass for the profiles."""
        out = []
        for sc in self.scenes:
            if names and sc.name not in names:
                continue
            n = self.scene_rounds(sc)
            self.say(f"scene {sc.name}: SDK vs floors, {n} rounds")
            out.append(measure_scene(self.idfs[sc.name], self.floors_for(sc), sc, n))
        self.passes.append(out)
        return out

    def check_profiles(self, profiles: dict[str, Any], only: str | None) -> list[TargetCheck]:
        self.say("device profiles")
        return check_profiles(
            profiles, self.bundle, self.scenes, self.passes, self.rounds, only=only
        )

    def floor_search_summary(self) -> dict[str, Any]:
        """Per scene: the chosen floor and every configuration timed for it."""
        return {
            name: {"best": found.best.label, "candidates": found.summary()}
            for name, found in self.floor_searches.items()
        }

    def multi(self) -> Scene:
        return next(s for s in self.scenes if s.name == MULTI)

    def throughput_and_cold_start(self, report: BenchReport) -> None:
        """The full run's tail: images per second and a fresh process's first result."""
        multi = self.multi()
        self.say("12 MP photo vs the same scene at its own size")
        report.big_photo = measure_big_photo(self.idfs[MULTI], multi, max(3, self.rounds // 2))
        self.say("throughput")
        report.throughput = measure_throughput(self.idfs[MULTI], multi, rounds=2)
        self.say("cold start (fresh processes)")
        report.cold_start = measure_cold_start(self.bundle, multi)


def run_bench(
    bundle_path: str | Path,
    *,
    rounds: int = 20,
    quick: bool = False,
    images: Path | None = None,
    providers: Sequence[str] | None = None,
    profiles_file: Path | None = None,
    profile: str | None = None,
    progress: Callable[[str], None] | None = None,
    precision: str | None = None,
) -> BenchReport:
    """Measure a bundle: stages against the floor, device profiles, and (unless ``quick``)
    throughput and cold start. onnxruntime only.

    ``precision`` picks the bundle's classifier variant for the SDK and the floor alike
    (default ``$PILLSNAP_PRECISION``, else the bundle's own), exactly as
    ``Identifier.from_bundle`` would: a kiosk measures what it will run."""
    bundle = select_precision(load_bundle(bundle_path), precision)
    profiles = load_profiles(profiles_file)  # before measuring: a typo'd --profile fails fast
    names = sorted(profiles.get("profiles", {}))
    if profile is not None and profile not in names:
        raise InvalidArgumentError(
            f"no device profile {profile!r} in {profiles.get('source', 'the profiles file')}; "
            f"choose from {', '.join(names) or '(none)'}"
        )
    provs = list(providers) if providers else ["CPUExecutionProvider"]
    scenes = find_scenes(images)
    goals = {"multi_e2e_vs_floor_max": GOAL_E2E_VS_FLOOR}
    report = BenchReport(meta=bench_meta(bundle, rounds, quick, provs, goals))
    report.meta["scenes"] = {s.name: s.source for s in scenes}
    session = BenchSession(bundle, scenes, rounds, provs, progress or (lambda _msg: None))
    report.scenes = session.scene_pass()
    report.floor_search = session.floor_search_summary()
    report.meta["profiles_source"] = profiles.get("source", "")
    report.profiles = session.check_profiles(profiles, profile)
    if not quick:
        session.throughput_and_cold_start(report)
    return report
