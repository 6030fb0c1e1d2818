"""OpenVINO execution provider against the CPU provider: both models and whole photos.

Why a separate script: OpenVINO needs the ``openvino`` extra, whose wheel *replaces*
onnxruntime (README, "Extras"), so it cannot run in the environment the rest of the
benchmarks use. Each row times the CPU and the OpenVINO side interleaved in the same rounds
(:func:`~pillsnap_sdk.bench.timing.measure_interleaved`) and reports the median of the
per-round ratios, which stays put on a shared machine when the milliseconds do not. Every
row also checks that OpenVINO gives CPU's answers: raw model outputs (max abs diff) and, on
photos, the same pills with the same names, boxes and probabilities within tolerance.

Run (needs onnxruntime-openvino; see docs/performance.md, "OpenVINO execution provider")::

    python -m benchmarks.openvino_compare [--rounds 15] [--json-out FILE]

Exit codes: 0 done and agreeing; 1 OpenVINO's answers differ from CPU's beyond tolerance;
2 OpenVINO is not available here or a bundle/photo is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pillsnap_sdk.bench.profiles import cpu_count
from pillsnap_sdk.bench.scenes import crops_for
from pillsnap_sdk.bench.timing import measure_interleaved, paired_ratio
from pillsnap_sdk.bundle.loader import Bundle, load_bundle
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.errors import PillsnapError
from pillsnap_sdk.image import load_image
from pillsnap_sdk.pipeline import Identifier
from pillsnap_sdk.preprocessing import preprocess, preprocess_batch
from pillsnap_sdk.results import IdentifyResult
from pillsnap_sdk.runtime import ProviderArg, create_session

__all__ = ["Agreement", "Row", "compare_identify", "compare_models", "default_photos", "main"]

OPENVINO = "OpenVINOExecutionProvider"
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TRAIN_IMAGES = Path("/work/shared/data/pushin-pill-train/images")
#: Tolerances for "gives CPU's answers": probabilities in [0, 1] and box pixels.
PROB_TOL = 1e-3
BOX_TOL_PX = 0.5
#: Raw outputs: relative to the largest CPU output (detector boxes are in pixels).
RAW_REL_TOL = 1e-4

F32 = npt.NDArray[np.float32]


@dataclass
class Agreement:
    """How close OpenVINO's output is to CPU's on one row."""

    same_names: bool
    max_abs_diff: float
    tolerance: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.same_names and self.max_abs_diff <= self.tolerance


@dataclass
class Row:
    """One measurement: p50 of each side (ms), OpenVINO/CPU paired ratio, agreement."""

    name: str
    cpu_p50_ms: float
    openvino_p50_ms: float
    ratio: float
    rounds: int
    agreement: Agreement
    extra: dict[str, Any] = field(default_factory=dict)


def _p50(samples: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(samples), 50))


def _time_pair(
    cpu: Callable[[], object], ov: Callable[[], object], rounds: int
) -> tuple[float, float, float]:
    s = measure_interleaved({"cpu": cpu, "openvino": ov}, rounds, warmup=2)
    return _p50(s["cpu"]), _p50(s["openvino"]), paired_ratio(s["openvino"], s["cpu"])


def _ov(threads: int | None) -> ProviderArg:
    """The OpenVINO provider, with its own thread count when one is asked for (its CPU
    plugin runs its own pool; onnxruntime's ``intra_op_num_threads`` does not reach it)."""
    return (OPENVINO, {"num_of_threads": threads}) if threads else OPENVINO


def _sessions(
    bundle: Bundle, provider: ProviderArg, threads: int | None
) -> tuple[Any, Any, dict[str, float]]:
    """Detector and classifier sessions built as the SDK builds them, and their load ms."""
    m = bundle.manifest
    if m.detector is None:
        raise PillsnapError("the OpenVINO comparison needs a bundle with a detector")
    load: dict[str, float] = {}
    out = []
    for role, spec, dyn in (("detector", m.detector, False), ("classifier", m.classifier, True)):
        t0 = time.perf_counter()
        out.append(
            create_session(
                bundle.model_bytes(spec.file),
                spec,
                providers=[provider],
                intra_op_threads=threads,
                strict_providers=True,
                dynamic_batch=dyn,
            )
        )
        load[role] = (time.perf_counter() - t0) * 1000.0
    return out[0], out[1], load


def _raw_agreement(a: F32, b: F32, *, classes: bool) -> Agreement:
    diff = float(np.abs(a - b).max())
    tol = RAW_REL_TOL * max(1.0, float(np.abs(a).max()))
    same = bool((a.argmax(axis=1) == b.argmax(axis=1)).all()) if classes else True
    return Agreement(same, diff, tol, "argmax per crop" if classes else "raw output")


def compare_models(
    bundle: Bundle,
    photo: bytes,
    rounds: int,
    batch_sizes: Sequence[int] = (1, 22),
    *,
    threads: int | None = None,
) -> list[Row]:
    """Bare ``session.run`` on pre-made tensors: detector batch 1, classifier per batch.

    The classifier's batch is the photo's crops (repeated when it has fewer), so the
    tensors are real pills, not noise.
    """
    m = bundle.manifest
    assert m.detector is not None
    rgb = load_image(photo)
    idf = Identifier(bundle, providers=["cpu"])
    crops = crops_for(idf, rgb, idf.identify(rgb))
    det_in = preprocess(rgb, m.detector.preprocessing)[0][None]
    cls_all, _ = preprocess_batch(crops, m.classifier.preprocessing)
    cpu_det, cpu_cls, cpu_load = _sessions(bundle, "CPUExecutionProvider", threads)
    ov_det, ov_cls, ov_load = _sessions(bundle, _ov(threads), threads)
    rows: list[Row] = []
    det_feed = {m.detector.input_name: det_in}
    a, b = cpu_det.run(None, det_feed)[0], ov_det.run(None, det_feed)[0]
    timed = _time_pair(
        lambda: cpu_det.run(None, det_feed), lambda: ov_det.run(None, det_feed), rounds
    )
    rows.append(
        Row(
            "detector batch 1",
            *timed,
            rounds,
            _raw_agreement(a, b, classes=False),
            {"load_ms": {"cpu": cpu_load["detector"], "openvino": ov_load["detector"]}},
        )
    )
    for n in batch_sizes:
        idx = np.arange(n) % cls_all.shape[0]
        feed = {m.classifier.input_name: np.ascontiguousarray(cls_all[idx])}
        a, b = cpu_cls.run(None, feed)[0], ov_cls.run(None, feed)[0]
        timed = _time_pair(
            partial(cpu_cls.run, None, feed), partial(ov_cls.run, None, feed), rounds
        )
        extra: dict[str, Any] = {"distinct_crops": int(min(n, cls_all.shape[0]))}
        if n == batch_sizes[0]:
            extra["load_ms"] = {"cpu": cpu_load["classifier"], "openvino": ov_load["classifier"]}
        rows.append(
            Row(f"classifier batch {n}", *timed, rounds, _raw_agreement(a, b, classes=True), extra)
        )
    return rows


def _result_agreement(cpu: IdentifyResult, ov: IdentifyResult) -> Agreement:
    names = [[c.code for c in p.candidates] for p in cpu.pills]
    same = names == [[c.code for c in p.candidates] for p in ov.pills]
    same = same and [p.status for p in cpu.pills] == [p.status for p in ov.pills]
    if not same:
        return Agreement(False, float("inf"), PROB_TOL, "pills, names or order differ")
    prob = 0.0
    box = 0.0
    for p, q in zip(cpu.pills, ov.pills, strict=True):
        for c, d in zip(p.candidates, q.candidates, strict=True):
            prob = max(prob, abs(c.confidence - d.confidence))
        if p.detection_confidence is not None and q.detection_confidence is not None:
            prob = max(prob, abs(p.detection_confidence - q.detection_confidence))
        if p.bbox is not None and q.bbox is not None:
            box = max(
                box,
                *(abs(x - y) for x, y in zip(p.bbox.as_tuple(), q.bbox.as_tuple(), strict=True)),
            )
    ok_box = box <= BOX_TOL_PX
    return Agreement(
        ok_box, prob, PROB_TOL, f"probabilities; boxes max {box:.3f} px (tol {BOX_TOL_PX})"
    )


def compare_identify(
    bundle: Bundle, photos: Sequence[Path], rounds: int, *, threads: int | None = None
) -> list[Row]:
    """``identify(photo bytes)`` end to end, CPU Identifier against OpenVINO Identifier."""
    cpu = Identifier(bundle, providers=["cpu"], strict_providers=True, intra_op_threads=threads)
    ov = Identifier(
        bundle, providers=[_ov(threads)], strict_providers=True, intra_op_threads=threads
    )
    if ov.providers[0] != OPENVINO:
        raise PillsnapError(f"OpenVINO Identifier runs on {ov.providers}")
    rows: list[Row] = []
    for path in photos:
        data = path.read_bytes()
        rc, ro = cpu.identify(data, top_k=5), ov.identify(data, top_k=5)
        timed = _time_pair(partial(cpu.identify, data), partial(ov.identify, data), rounds)
        rows.append(
            Row(
                f"identify {len(rc.pills)}-pill photo",
                *timed,
                rounds,
                _result_agreement(rc, ro),
                {"photo": path.name, "size": list(rc.image_size)},
            )
        )
    return rows


def _train_photos(folder: Path, counts: Sequence[int]) -> list[Path]:
    """The first training photo with each pill count (YOLO labels beside ``images/``)."""
    found: dict[int, Path] = {}
    labels = folder.parent / "labels"
    for img in sorted(folder.glob("*.jpg")):
        lab = labels / f"{img.stem}.txt"
        if not lab.is_file():
            continue
        n = sum(1 for line in lab.read_text(encoding="utf-8").splitlines() if line.strip())
        if n in counts and n not in found:
            found[n] = img
        if len(found) == len(counts):
            break
    return [found[n] for n in sorted(found)]


def default_photos(train: Path | None = TRAIN_IMAGES) -> list[Path]:
    """The example photos (1, 1, 3 and 22 pills) plus training photos with 1-3 pills."""
    photos = [
        EXAMPLES / n
        for n in ("single_pill.jpg", "single_pill_2.jpg", "multi_pills.jpg", "table_22_pills.jpg")
    ]
    if train is not None and train.is_dir():
        photos[3:3] = _train_photos(train, (1, 2, 3))
    seen: set[bytes] = set()
    unique: list[Path] = []
    for p in photos:  # multi_pills.jpg is one of the training photos
        data = p.read_bytes() if p.is_file() else None
        if data is not None and data not in seen:
            seen.add(data)
            unique.append(p)
    return unique


def format_rows(rows: Sequence[Row]) -> str:
    """Markdown table: the docs/performance.md section is this table, pasted."""
    lines = [
        "| row | CPU p50 ms | OpenVINO p50 ms | OpenVINO / CPU | max abs diff (tol) | same names |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ag = r.agreement
        what = str(r.extra.get("photo", ""))
        what = what if len(what) <= 24 else f"{what[:20]}...jpg"
        lines.append(
            f"| {r.name}{f' ({what})' if what else ''} | {r.cpu_p50_ms:.1f} | "
            f"{r.openvino_p50_ms:.1f} | {r.ratio:.2f} | {ag.max_abs_diff:.2g} ({ag.tolerance:.0e}) "
            f"| {'yes' if ag.same_names else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.openvino_compare", description=__doc__.split("\n")[0]
    )
    p.add_argument("--bundle", type=Path, help="bundle dir or .zip (default: models/DEFAULT)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds per row")
    p.add_argument("--photos", type=Path, nargs="*", help="photos for the identify rows")
    p.add_argument(
        "--model-photo",
        type=Path,
        default=EXAMPLES / "table_22_pills.jpg",
        help="photo whose letterbox and crops feed the model rows",
    )
    p.add_argument(
        "--train-images", type=Path, default=TRAIN_IMAGES, help="add 1-3 pill photos from here"
    )
    p.add_argument("--models-only", action="store_true", help="skip the identify rows")
    p.add_argument(
        "--threads", type=int, help="threads per model on both sides (default: each one's own)"
    )
    p.add_argument("--json-out", type=Path, metavar="FILE", help="also write the rows as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if OPENVINO not in ort.get_available_providers():
        print(
            f"OpenVINO is not in this onnxruntime ({ort.__version__}: "
            f"{ort.get_available_providers()}); install the openvino extra (README, Extras)",
            file=sys.stderr,
        )
        return 2
    if args.rounds < 1:
        print("--rounds must be >= 1", file=sys.stderr)
        return 2
    bundle = load_bundle(args.bundle or default_bundle_path())
    photos = args.photos or default_photos(args.train_images)
    if not args.model_photo.is_file() or not photos:
        print(f"missing photos ({args.model_photo}, {len(photos)} for identify)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    rows = compare_models(bundle, args.model_photo.read_bytes(), args.rounds, threads=args.threads)
    if not args.models_only:
        rows += compare_identify(bundle, photos, args.rounds, threads=args.threads)
    header = (
        f"OpenVINO EP vs CPU EP, bundle {bundle.manifest.name} {bundle.manifest.version}, "
        f"onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}, "
        f"{cpu_count()} CPUs, threads {args.threads or 'default'}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.rounds} rounds, "
        f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(header)
    print(format_rows(rows), end="")
    loads = [
        f"{r.name}: CPU {r.extra['load_ms']['cpu']:.0f}, OpenVINO "
        f"{r.extra['load_ms']['openvino']:.0f}"
        for r in rows
        if "load_ms" in r.extra
    ]
    print(f"session load ms ({'; '.join(loads)})")
    if args.json_out is not None:
        payload = {"header": header, "rows": [asdict(r) | {"ok": r.agreement.ok} for r in rows]}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    bad = [r.name for r in rows if not r.agreement.ok]
    if bad:
        print(f"OpenVINO differs from CPU beyond tolerance: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
