"""The RTX 5080 device profile on a CUDA machine: CUDA, TensorRT fp16, CUDA + IO binding.

Why a script of its own: the development machine has no GPU, so the GPU targets of
``pillsnap_sdk/bench/devices.yaml`` (end to end < 100 ms, classifier < 50 ms per photo) have
never been measured. Whoever gets a CUDA machine runs ``benchmarks/gpu_check.sh`` once
(<= 5 minutes, installs nothing) and pastes the printed table into docs/performance.md.

Each configuration runs the SDK's real pipeline (:class:`~pillsnap_sdk.Identifier` with the
configuration's sessions as its runners), so preprocessing, routing and thresholds are the
shipped ones; only the engine differs:

* ``cuda``: onnxruntime's CUDA provider, default options.
* ``cuda+iobinding``: the same CUDA sessions driven through ``io_binding``: each model
  input is uploaded once into a device ``OrtValue`` and outputs are allocated on the device
  and copied back once. (The detector's raw output goes back to the CPU for NMS and the
  crops are cut from the full-resolution photo on the CPU, as the SDK does.)
* ``tensorrt-fp16``: TensorRT provider, fp16, engine and timing cache in ``--trt-cache``
  (the first run builds the engines, ~1-3 minutes; later runs load them), the classifier
  with one optimisation profile for batches 1..16 so no batch size triggers a rebuild.

Every row is checked against the CPU provider's answers on the same photo (same pills with
the same best name; the largest difference of their probabilities is reported, fp16 moves
it). ``--dry-run`` runs the same code with
the CPU provider standing in for every engine and 2 rounds, so CI exercises it; its
statuses say "dry run", never "pass".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pillsnap_sdk.bench.profiles import (
    TargetCheck,
    evaluate_targets,
    gpu_names,
    load_profiles,
)
from pillsnap_sdk.bench.scenes import MULTI, SINGLE, Scene, find_scenes
from pillsnap_sdk.bench.timing import Stat, measure_interleaved
from pillsnap_sdk.bundle.loader import Bundle, load_bundle
from pillsnap_sdk.bundle.manifest import ModelSpec
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.pipeline import Identifier, Runners
from pillsnap_sdk.results import IdentifyResult
from pillsnap_sdk.runtime import ProviderArg, create_session, install_hint
from pillsnap_sdk.stages import CLASSIFIER_CHUNK, Runner

__all__ = ["CONFIGS", "ConfigResult", "IOBindingRunner", "main", "provider_lists", "trt_options"]

CUDA, TRT, CPU = "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"
CONFIGS = ("cuda", "cuda+iobinding", "tensorrt-fp16")
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DEFAULT_PROFILE = "rtx5080"


def trt_options(spec: ModelSpec, cache: Path, *, dynamic_batch: bool) -> dict[str, Any]:
    """TensorRT provider options for one model: fp16, engine + timing cache, and for the
    classifier one shape profile covering every batch the pipeline sends (1..16)."""
    opts: dict[str, Any] = {
        "device_id": 0,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }
    if dynamic_batch:
        h, w = spec.preprocessing.size
        shape = f"3x{h}x{w}"
        name = spec.input_name
        opts["trt_profile_min_shapes"] = f"{name}:1x{shape}"
        opts["trt_profile_opt_shapes"] = f"{name}:{CLASSIFIER_CHUNK}x{shape}"
        opts["trt_profile_max_shapes"] = f"{name}:{CLASSIFIER_CHUNK}x{shape}"
    return opts


def provider_lists(
    config: str, spec: ModelSpec, cache: Path, *, dynamic_batch: bool, dry_run: bool
) -> list[ProviderArg]:
    """The providers one model's session gets under ``config``; CPU only in a dry run."""
    if dry_run:
        return [CPU]
    if config == "tensorrt-fp16":
        return [(TRT, trt_options(spec, cache, dynamic_batch=dynamic_batch)), (CUDA, {}), CPU]
    return [(CUDA, {"device_id": 0}), CPU]


class IOBindingRunner:
    """A :class:`~pillsnap_sdk.stages.Runner` that drives a session through ``io_binding``:
    input uploaded into a device ``OrtValue``, outputs allocated on the device, one copy
    back. ``device`` is ``"cuda"`` (or ``"cpu"`` for the dry run)."""

    def __init__(self, session: ort.InferenceSession, device: str) -> None:
        self.session = session
        self.device = device
        self.outputs = [o.name for o in session.get_outputs()]

    def get_providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, output_names: Any, input_feed: dict[str, Any]) -> list[Any]:
        binding = self.session.io_binding()
        for name, array in input_feed.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, 0)
            binding.bind_ortvalue_input(name, value)
        for name in self.outputs:
            binding.bind_output(name, self.device, 0)
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())


@dataclass
class ConfigResult:
    """One configuration on one photo: p50s (ms), load time, agreement with CPU."""

    config: str
    scene: str
    providers: list[str]
    load_ms: float
    end_to_end: Stat
    detector: Stat | None
    classifier: Stat
    same_top1_as_cpu: bool
    max_prob_diff_vs_cpu: float
    notes: list[str] = field(default_factory=list)


def _session(
    bundle: Bundle, spec: ModelSpec, provs: list[ProviderArg], dynamic_batch: bool
) -> ort.InferenceSession:
    return create_session(
        bundle.model_bytes(spec.file),
        spec,
        providers=provs,
        intra_op_threads=None,
        strict_providers=True,
        dynamic_batch=dynamic_batch,
    )


def build_identifier(
    bundle: Bundle, config: str, cache: Path, *, dry_run: bool
) -> tuple[Identifier, float]:
    """The SDK pipeline with ``config``'s sessions as its runners, and the build time (ms;
    for TensorRT this includes building or loading the engines)."""
    m = bundle.manifest
    t0 = time.perf_counter()
    cls_provs = provider_lists(config, m.classifier, cache, dynamic_batch=True, dry_run=dry_run)
    sessions = [_session(bundle, m.classifier, cls_provs, True)]
    if m.detector is not None:
        det_provs = provider_lists(config, m.detector, cache, dynamic_batch=False, dry_run=dry_run)
        sessions.append(_session(bundle, m.detector, det_provs, False))
    runners: list[Runner] = list(sessions)
    if config == "cuda+iobinding":
        device = "cpu" if dry_run else "cuda"
        runners = [IOBindingRunner(s, device) for s in sessions]
    det = runners[1] if len(runners) > 1 else None
    idf = Identifier(bundle, runners=Runners(classifier=runners[0], detector=det))
    return idf, (time.perf_counter() - t0) * 1000.0


def _agreement(ref: IdentifyResult, got: IdentifyResult) -> tuple[bool, float]:
    """Same pills with the same best name as the CPU provider, and the largest difference
    of those best names' probabilities (fp16 may reorder near-tied runners-up, which is
    why only the best name is compared)."""

    def best(r: IdentifyResult) -> list[tuple[str, str]]:
        return [(p.status, p.candidates[0].code if p.candidates else "") for p in r.pills]

    same = best(ref) == best(got)
    if not same:
        return False, float("inf")
    diffs = [
        abs(p.candidates[0].confidence - q.candidates[0].confidence)
        for p, q in zip(ref.pills, got.pills, strict=True)
        if p.candidates and q.candidates
    ]
    return True, float(max(diffs, default=0.0))


def measure_config(
    idf: Identifier, config: str, load_ms: float, scene: Scene, ref: IdentifyResult, rounds: int
) -> ConfigResult:
    """``identify(photo bytes)`` ``rounds`` times; stage p50s from the SDK's own timings."""
    timings: list[dict[str, float]] = []

    def once() -> None:
        timings.append(idf.identify(scene.data).timings_ms)

    samples = measure_interleaved({config: once}, rounds, warmup=2)[config]
    timings = timings[-rounds:]
    det = [t.get("detect_preprocess", 0.0) + t["detect"] for t in timings if "detect" in t]
    cls = [t.get("classify_preprocess", 0.0) + t.get("classify", 0.0) for t in timings]
    same, diff = _agreement(ref, idf.identify(scene.data))
    return ConfigResult(
        config=config,
        scene=scene.name,
        providers=idf.providers,
        load_ms=load_ms,
        end_to_end=Stat.of(samples),
        detector=Stat.of(det) if det else None,
        classifier=Stat.of(cls),
        same_top1_as_cpu=same,
        max_prob_diff_vs_cpu=diff,
    )


def default_scenes(images: Path | None) -> list[Scene]:
    """The example photos (1 and 22 pills, in the repository), else ``find_scenes``."""
    if images is None:
        single, multi = EXAMPLES / "single_pill.jpg", EXAMPLES / "table_22_pills.jpg"
        if single.is_file() and multi.is_file():
            return [
                Scene(SINGLE, f"examples/{single.name}", single.read_bytes(), 1),
                Scene(MULTI, f"examples/{multi.name}", multi.read_bytes(), 22),
            ]
    return find_scenes(images)


def profile_checks(
    profile: str, targets: dict[str, float], results: Sequence[ConfigResult], note: str
) -> list[TargetCheck]:
    """The profile's targets against each configuration's measurements (rows per config)."""
    checks: list[TargetCheck] = []
    for config in dict.fromkeys(r.config for r in results):
        measured = {
            r.scene: {"end_to_end": r.end_to_end.p50, "classifier": r.classifier.p50}
            for r in results
            if r.config == config
        }
        for tc in evaluate_targets(f"{profile}/{config}", targets, measured):
            tc.note = note
            checks.append(tc)
    return checks


def format_table(results: Sequence[ConfigResult], checks: Sequence[TargetCheck]) -> str:
    """The measurements, then the profile table in ``pillsnap bench``'s layout."""
    lines = [
        f"{'config':<16}{'scene':<12}{'load ms':>9}{'e2e p50':>9}{'p95':>8}{'det p50':>9}"
        f"{'cls p50':>9}  same top-1 / max |dp| vs CPU   providers",
    ]
    for r in results:
        det = f"{r.detector.p50:>9.1f}" if r.detector else f"{'-':>9}"
        lines.append(
            f"{r.config:<16}{r.scene:<12}{r.load_ms:>9.0f}{r.end_to_end.p50:>9.1f}"
            f"{r.end_to_end.p95:>8.1f}{det}{r.classifier.p50:>9.1f}  "
            f"{'yes' if r.same_top1_as_cpu else 'NO':<4}{r.max_prob_diff_vs_cpu:>10.2g}"
            f"{'':<14}{','.join(p.removesuffix('ExecutionProvider') for p in r.providers)}"
        )
    lines += ["", "device profile; p50 ms vs target"]
    for tc in checks:
        got = f"{tc.measured_ms:.1f}" if tc.measured_ms is not None else "-"
        lines.append(
            f"  {tc.profile:<30}{tc.metric:<12}{tc.scene:<12}{got:>9} <= "
            f"{tc.target_ms:<8.0f}{tc.status.upper():<9}{tc.note}"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0]
    )
    p.add_argument("--dry-run", action="store_true", help="CPU stands in for every engine")
    p.add_argument("--bundle", type=Path, help="bundle dir or .zip (default: models/DEFAULT)")
    p.add_argument("--images", type=Path, help="YOLO photo folder (default: examples/)")
    p.add_argument("--rounds", type=int, help="rounds per photo (default 30; dry run 2)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="device profile whose targets apply")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    p.add_argument("--trt-cache", type=Path, default=Path(".trt-cache"), help="TensorRT caches")
    p.add_argument("--budget-s", type=float, default=270.0, help="stop starting configs after")
    p.add_argument("--json-out", type=Path, metavar="FILE", help="also write the results as JSON")
    return p


def _preload_cuda() -> None:
    """Load CUDA/cuDNN from the nvidia-* wheels (``onnxruntime-gpu[cuda,cudnn]``) when
    onnxruntime can (>= 1.21); libraries installed system-wide are found without it."""
    preload = getattr(ort, "preload_dlls", None)
    if callable(preload):
        try:
            preload()
        except Exception as exc:  # diagnostics only: the session build says what is missing
            print(f"gpu_check: onnxruntime.preload_dlls(): {exc}", file=sys.stderr)


def _cuda_missing() -> str | None:
    """Why no configuration can run here, or None."""
    avail = ort.get_available_providers()
    if CUDA not in avail:
        return (
            f"{CUDA} is not in this onnxruntime ({ort.__version__}: {avail}). To install: "
            f"{install_hint(CUDA)}. Or run with --dry-run"
        )
    return None


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    """Exit codes: 0 measured (whatever the statuses); 1 a configuration failed to build or
    disagreed with CPU; 2 usage error or no CUDA (without ``--dry-run``)."""
    args = _parser().parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs or any(c not in CONFIGS for c in configs):
        print(f"--configs: choose from {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    if not args.dry_run:
        _preload_cuda()
    why = None if args.dry_run else _cuda_missing()
    if why:
        print(f"gpu_check: {why}", file=sys.stderr)
        return 2
    failed: list[str] = []
    if not args.dry_run and "tensorrt-fp16" in configs and TRT not in ort.get_available_providers():
        # The CUDA rows are still worth the machine: report TensorRT as failed, run the rest.
        configs.remove("tensorrt-fp16")
        failed.append(f"tensorrt-fp16: {TRT} is not in this onnxruntime ({install_hint(TRT)})")
    rounds = args.rounds or (2 if args.dry_run else 30)
    profiles = load_profiles()["profiles"]
    if args.profile not in profiles:
        print(f"--profile: choose from {', '.join(profiles)}", file=sys.stderr)
        return 2
    prof = profiles[args.profile]
    targets = {k: float(v) for k, v in prof.get("targets_ms", {}).items()}
    gpus = gpu_names()
    match = str(prof.get("device_match", ""))
    note = "dry run on CPU" if args.dry_run else ""
    if not args.dry_run and match and not any(match.lower() in g.lower() for g in gpus):
        note = f"measured on {', '.join(gpus) or 'an unnamed GPU'}, profile is for {match}"
    bundle = load_bundle(args.bundle or default_bundle_path())
    scenes = default_scenes(args.images)
    if "tensorrt-fp16" in configs and not args.dry_run:
        args.trt_cache.mkdir(parents=True, exist_ok=True)
    cpu_ref = Identifier(bundle, providers=[CPU])
    refs = {sc.name: cpu_ref.identify(sc.data) for sc in scenes}
    out(
        f"gpu_check: bundle {bundle.manifest.name} {bundle.manifest.version}, onnxruntime "
        f"{ort.__version__}, GPU {', '.join(gpus) or 'none'}, {rounds} rounds"
        f"{' (DRY RUN: CPU provider)' if args.dry_run else ''}"
    )
    started = time.monotonic()
    results: list[ConfigResult] = []
    for config in configs:
        if time.monotonic() - started > args.budget_s:
            failed.append(f"{config}: not started, --budget-s {args.budget_s:.0f} spent")
            continue
        try:
            idf, load_ms = build_identifier(bundle, config, args.trt_cache, dry_run=args.dry_run)
            for sc in scenes:
                r = measure_config(idf, config, load_ms, sc, refs[sc.name], rounds)
                results.append(r)
                out(
                    f"  {config:<16}{sc.name:<12} e2e p50 {r.end_to_end.p50:.1f} ms, "
                    f"classifier {r.classifier.p50:.1f} ms (load {load_ms:.0f} ms)"
                )
        except Exception as exc:  # one configuration's failure must not lose the others' rows
            failed.append(f"{config}: {type(exc).__name__}: {str(exc)[:300]}")
    checks = profile_checks(args.profile, targets, results, note)
    if args.dry_run:
        for tc in checks:
            tc.status = "not run"
    out(format_table(results, checks))
    for f in failed:
        out(f"FAILED {f}")
    if args.json_out is not None:
        payload = {
            "dry_run": args.dry_run,
            "gpus": gpus,
            "onnxruntime": ort.__version__,
            "results": [asdict(r) for r in results],
            "profile": [asdict(tc) for tc in checks],
            "failed": failed,
        }
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    disagree = [f"{r.config}/{r.scene}" for r in results if not r.same_top1_as_cpu]
    if disagree:
        out(f"pills or best names differ from the CPU provider's: {disagree}")
    return 1 if failed or disagree else 0


if __name__ == "__main__":
    raise SystemExit(main())
