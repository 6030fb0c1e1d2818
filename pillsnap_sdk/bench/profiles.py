"""Device profiles: absolute p50 targets per device, checked only on that device.

The one device-profile module: ``pillsnap bench`` and the release's latency gate both read
the targets (``devices.yaml`` beside this module, package data) and decide whether a
profile fits this machine (:func:`cpu_count`, :func:`gpu_names`, :func:`profile_applies`)
here. The file is written in YAML's JSON subset, so the runtime, which has no YAML parser,
reads it with the standard library.

Why "only on that device": a GPU target met on no GPU is meaningless, so a profile whose
device or provider is not really active is reported "not run", never "pass".
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort

from ..bundle.loader import Bundle
from ..errors import BundleError, PillsnapError, ProviderUnavailableError
from ..pipeline import Identifier
from .floor import Floor
from .scenes import Scene, scene_bundle
from .stages import SceneResult, measure_scene

__all__ = [
    "PROFILES_RESOURCE",
    "TargetCheck",
    "check_profiles",
    "cpu_count",
    "evaluate_targets",
    "gpu_names",
    "load_profiles",
    "parse_target_key",
    "profile_applies",
]

#: The profiles shipped with the package (package data, so an installed wheel reads the
#: same file as a source checkout).
PROFILES_RESOURCE = "devices.yaml"
_PACKAGE = "pillsnap_sdk.bench"

_METRICS = ("end_to_end", "classifier")
TargetStatus = Literal["pass", "fail", "not run"]


@dataclass
class TargetCheck:
    """A device-profile target (p50 ms) against what this run measured."""

    profile: str
    metric: str
    scene: str
    target_ms: float
    measured_ms: float | None
    status: TargetStatus
    note: str = ""


def load_profiles(path: Path | None = None) -> dict[str, Any]:
    """Device profiles: the packaged ``devices.yaml``, or ``path`` (JSON or YAML).

    The ``source`` key (shown in the bench table) says which file was read. A YAML file that
    is not JSON needs pyyaml, which the runtime does not depend on.
    """
    if path is None:
        text = resources.files(_PACKAGE).joinpath(PROFILES_RESOURCE).read_text("utf-8")
        source = f"{_PACKAGE}/{PROFILES_RESOURCE}"
    elif not path.is_file():
        raise PillsnapError(f"no device profiles file {path}")
    else:
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            import yaml
        except ImportError as exc:
            raise PillsnapError(f"{source}: not JSON, and pyyaml is not installed") from exc
        data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise PillsnapError(f"{source}: expected a mapping with a 'profiles' mapping")
    return {**data, "source": source}


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask in containers, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_names() -> list[str]:
    """GPU names from ``nvidia-smi`` (empty when there is none or it cannot run)."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def parse_target_key(key: str, scenes: Sequence[str]) -> tuple[str | None, str] | None:
    """``"multi_pill_end_to_end_p50"`` -> ``("multi_pill", "end_to_end")``; unknown -> None."""
    if not key.endswith("_p50"):
        return None
    body = key.removesuffix("_p50")
    if body in _METRICS:
        return None, body
    for scene in scenes:
        rest = body.removeprefix(f"{scene}_")
        if rest != body and rest in _METRICS:
            return scene, rest
    return None


def evaluate_targets(
    profile: str, targets: Mapping[str, float], measured: Mapping[str, Mapping[str, float]]
) -> list[TargetCheck]:
    """Compare ``measured[scene][metric]`` (p50 ms) with a profile's ``targets_ms``.

    A target with nothing measured for it is "not run": not measured is never a pass.
    """
    checks: list[TargetCheck] = []
    for key, target in targets.items():
        parsed = parse_target_key(key, list(measured))
        if parsed is None:
            checks.append(
                TargetCheck(profile, key, "*", float(target), None, "not run", "unknown target key")
            )
            continue
        only, metric = parsed
        for scene, values in measured.items():
            if only is not None and scene != only:
                continue
            got = values.get(metric)
            status: TargetStatus = (
                "not run" if got is None else ("pass" if got <= target else "fail")
            )
            checks.append(TargetCheck(profile, metric, scene, float(target), got, status))
    return checks


def _scene_metrics(passes: Sequence[Sequence[SceneResult]]) -> dict[str, dict[str, float]]:
    """Per scene, the best p50 over the measurement passes (re-measured on failure)."""
    out: dict[str, dict[str, float]] = {}
    for results in passes:
        for s in results:
            cls = sum(s.stages[k].p50 for k in ("classify_preprocess", "classify") if k in s.stages)
            cur = out.setdefault(s.scene, {"end_to_end": s.e2e.p50, "classifier": cls})
            cur["end_to_end"] = min(cur["end_to_end"], s.e2e.p50)
            cur["classifier"] = min(cur["classifier"], cls)
    return out


def _not_run(
    profile: str, targets: Mapping[str, float], scenes: Sequence[Scene], reason: str
) -> list[TargetCheck]:
    names = [sc.name for sc in scenes]
    out: list[TargetCheck] = []
    for key, target in targets.items():
        parsed = parse_target_key(key, names)
        metric, where = (parsed[1], parsed[0] or "*") if parsed else (key, "*")
        out.append(TargetCheck(profile, metric, where, float(target), None, "not run", reason))
    return out


def profile_applies(prof: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a profile fits this machine, and why not.

    CPU profiles: at most ``max_cpus`` CPUs. GPU profiles: a GPU whose name contains
    ``device_match`` (if set); whether the provider really runs is checked when measuring.
    """
    provider = str(prof.get("provider", "CPUExecutionProvider"))
    if provider != "CPUExecutionProvider":
        match = str(prof.get("device_match", ""))
        if match:
            names = gpu_names()
            if not any(match.lower() in n.lower() for n in names):
                return False, f"needs a {match}; found {', '.join(names) or 'no NVIDIA GPU'}"
        return True, ""
    limit = prof.get("max_cpus")
    if limit is not None and cpu_count() > int(limit):
        return False, f"this machine has {cpu_count()} CPUs, profile is for <= {limit}"
    return True, ""


def check_profiles(
    profiles: Mapping[str, Any],
    bundle: Bundle,
    scenes: Sequence[Scene],
    cpu_passes: Sequence[Sequence[SceneResult]],
    rounds: int,
    *,
    only: str | None = None,
) -> list[TargetCheck]:
    """Every profile's targets: CPU ones from this run's passes, GPU ones measured here.

    A GPU profile is measured only when its provider loads with ``strict_providers=True``
    (and, with ``device_match``, the GPU's name matches); otherwise its rows say "not run".
    """
    checks: list[TargetCheck] = []
    for name, prof in profiles.get("profiles", {}).items():
        if only and name != only:
            continue
        targets: dict[str, float] = dict(prof.get("targets_ms", {}))
        ok, reason = profile_applies(prof)
        if not ok:
            checks += _not_run(name, targets, scenes, reason)
            continue
        provider = str(prof.get("provider", "CPUExecutionProvider"))
        if provider == "CPUExecutionProvider":
            checks += evaluate_targets(name, targets, _scene_metrics(cpu_passes))
            continue
        if provider not in ort.get_available_providers():
            reason = f"{provider} not in this onnxruntime build"
            checks += _not_run(name, targets, scenes, reason)
            continue
        results: list[SceneResult] = []
        try:
            for sc in scenes:
                b = scene_bundle(bundle, sc)
                idf = Identifier(b, providers=[provider], strict_providers=True)
                floors = (Floor(b, [provider]), Floor(b, [provider], sdk_options=True))
                results.append(measure_scene(idf, floors, sc, rounds))
        except (ProviderUnavailableError, BundleError) as exc:
            first_line = str(exc).split(";")[0][:100]
            checks += _not_run(name, targets, scenes, f"{provider} not active ({first_line})")
            continue
        checks += evaluate_targets(name, targets, _scene_metrics([results]))
    return checks
