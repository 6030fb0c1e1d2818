"""Experiments behind the speed-up proposals in docs/performance.md (reproducible).

``pillsnap_sdk/runtime.py`` and ``pipeline.py`` are not changed here; instead the
session factory the pipeline uses is wrapped in-process, so each proposal runs through the
real ``Identifier.identify`` and is timed interleaved with the current SDK and the floor::

    python benchmarks/explore.py options  [--rounds 8]   # session options, end to end
    python benchmarks/explore.py rss                     # peak/steady RSS per option set
    python benchmarks/explore.py chunks   [--rounds 6]   # classifier batch chunk size
    python benchmarks/explore.py ablation [--rounds 8]   # seed style -> SDK, piece by piece
    python benchmarks/explore.py decode   [--rounds 8]   # PIL vs cv2 decode, 0.3 MP and 12 MP
    python benchmarks/explore.py nms      [--rounds 41]  # numpy NMS vs cv2.dnn.NMSBoxes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_bench_bundle import bench_bundle_path

import pillsnap_sdk.pipeline as pipeline
import pillsnap_sdk.runtime as runtime
import pillsnap_sdk.sessions as pipeline_sessions
from benchmarks.photos import bench_scenes
from benchmarks.seed_style import SeedStylePeer
from pillsnap_sdk.bench.floor import Floor
from pillsnap_sdk.bench.scenes import crops_for, scene_bundle
from pillsnap_sdk.bench.timing import measure_interleaved, paired_ratio
from pillsnap_sdk.bundle.loader import Bundle, load_bundle
from pillsnap_sdk.image import load_image
from pillsnap_sdk.preprocessing import preprocess, preprocess_batch

#: name -> (classifier memory arena on, intra-op spinning "0"/"1"/None = ORT default)
CONFIGS: dict[str, tuple[bool, str | None]] = {
    "A  SDK today (classifier arena off)": (False, None),
    "B  classifier arena on": (True, None),
    "C  no intra-op spinning": (False, "0"),
    "D  arena on + no spinning": (True, "0"),
}


@contextlib.contextmanager
def session_options(arena_cls: bool, spin: str | None) -> Iterator[None]:
    """Build Identifiers inside this block with a proposed variant of runtime's options."""
    original = runtime.create_session
    real_opts = runtime.ort.SessionOptions

    def create(*args: Any, dynamic_batch: bool, **kw: Any) -> Any:
        def factory() -> Any:
            opts = real_opts()
            if spin is not None:
                opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
            return opts

        runtime.ort.SessionOptions = factory
        try:
            return original(*args, dynamic_batch=dynamic_batch and not arena_cls, **kw)
        finally:
            runtime.ort.SessionOptions = real_opts

    pipeline_sessions.create_session = create  # type: ignore[assignment]
    try:
        yield
    finally:
        pipeline_sessions.create_session = original


def _bundle(path: str | None) -> Bundle:
    return load_bundle(path or bench_bundle_path())


def _report(samples: dict[str, list[float]], ref: str | None = None) -> None:
    for name, v in samples.items():
        extra = f"  vs {ref.split()[0]} {paired_ratio(v, samples[ref]):.3f}" if ref else ""
        print(f"  {name:52s} p50 {statistics.median(v):8.1f} ms  min {min(v):8.1f}{extra}")


def cmd_options(b: Bundle, rounds: int) -> None:
    for sc in bench_scenes():
        sb = scene_bundle(b, sc)
        idfs = {}
        for name, (arena, spin) in CONFIGS.items():
            with session_options(arena, spin):
                idfs[name] = pipeline.Identifier(sb)
        floor = Floor(sb)
        rgb = load_image(sc.data)
        ref = next(iter(idfs.values()))
        res = ref.identify(sc.data)
        crops = crops_for(ref, rgb, res)
        det, chunks = floor.inputs(rgb, crops)
        fns: dict[str, Callable[[], object]] = {
            "floor (ORT defaults)": lambda f=floor, d=det, c=chunks: f.run(d, c)
        }
        for name, idf in idfs.items():
            fns[name] = lambda idf=idf, data=sc.data: idf.identify(data)
        s = measure_interleaved(fns, rounds)
        print(f"== {sc.name}: {len(res.pills)} pill(s), {rounds} rounds; ratio = paired median")
        _report(s, "floor (ORT defaults)")


_RSS_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import explore, pillsnap_sdk.pipeline as pl
from pillsnap_sdk.bench.coldstart import peak_rss_mb
from pillsnap_sdk.bench.scenes import with_thresholds
arena, spin = explore.CONFIGS[sys.argv[2]]
b = explore._bundle(sys.argv[3] or None)
with explore.session_options(arena, spin):
    idf = pl.Identifier(with_thresholds(b, max_detections=32))
multi = explore.bench_scenes()[1]
rng = np.random.default_rng(0)
for i in range(30):
    idf.classify_probabilities([np.zeros((120, 100, 3), np.uint8)] * int(rng.integers(1, 33)))
    if i % 5 == 0:
        idf.identify(multi.data)
rss = [float(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmRSS:')]
print(json.dumps({'peak_mb': peak_rss_mb(), 'steady_mb': rss[0]}))
"""


def cmd_rss(bundle_path: str | None) -> None:
    print("30 classifier calls of 1..32 crops + 6 multi-pill identify calls, fresh process each")
    for name in CONFIGS:
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(Path(__file__).parent), name, bundle_path or ""],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"  {name:40s} peak {r['peak_mb']:6.0f} MB   after {r['steady_mb']:6.0f} MB")


def cmd_chunks(b: Bundle, rounds: int) -> None:
    crops = 22
    x = np.random.default_rng(0).standard_normal((crops, 3, 224, 224)).astype(np.float32)
    name = b.manifest.classifier.input_name

    def make(arena: bool, spin: str) -> Any:
        o = ort.SessionOptions()
        o.log_severity_level = 3
        o.enable_cpu_mem_arena = arena
        o.enable_mem_pattern = arena
        o.add_session_config_entry("session.intra_op.allow_spinning", spin)
        return ort.InferenceSession(
            b.model_bytes(b.manifest.classifier.file),
            sess_options=o,
            providers=["CPUExecutionProvider"],
        )

    fns: dict[str, Callable[[], object]] = {}
    for label, sess in (
        ("arena on, spinning (ORT default)", make(True, "1")),
        ("arena on, no spinning", make(True, "0")),
    ):
        for step in (1, 4, 8, crops):
            fns[f"{label}: {crops} crops in chunks of {step}"] = lambda s=sess, k=step: [
                s.run(None, {name: x[i : i + k]}) for i in range(0, crops, k)
            ]
    _report(measure_interleaved(fns, rounds))


def cmd_ablation(b: Bundle, rounds: int) -> None:
    sc = bench_scenes()[1]
    sb = scene_bundle(b, sc)
    m = sb.manifest
    assert m.detector is not None
    idf = pipeline.Identifier(sb)
    rgb = load_image(sc.data)
    crops = crops_for(idf, rgb, idf.identify(sc.data))
    seed = SeedStylePeer(sb)
    o = ort.SessionOptions()
    o.log_severity_level = 3
    cls = ort.InferenceSession(
        b.model_bytes(m.classifier.file), sess_options=o, providers=["CPUExecutionProvider"]
    )
    batch = preprocess_batch(crops, m.classifier.preprocessing)[0]
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    dspec, cspec = m.detector.preprocessing, m.classifier.preprocessing
    n = len(crops)

    def do_clahe() -> object:
        lum, a, bb = cv2.split(cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB))
        return cv2.cvtColor(cv2.merge((clahe.apply(lum), a, bb)), cv2.COLOR_LAB2BGR)

    fns: dict[str, Callable[[], object]] = {
        "CLAHE on the photo (seed)": do_clahe,
        "detector input, float64 numpy (seed)": (
            lambda: seed._normalise64(seed._letterbox(rgb, dspec)[0], dspec)
        ),
        "detector input, float32 in place (SDK)": lambda: preprocess(rgb, dspec),
        f"{n} crop inputs, float64 numpy (seed)": (
            lambda: [seed._normalise64(seed._letterbox(c, cspec)[0], cspec) for c in crops]
        ),
        f"{n} crop inputs, float32 batch (SDK)": lambda: preprocess_batch(crops, cspec),
        f"{n} classifier runs of 1 crop (seed)": (
            lambda: [cls.run(None, {"input": batch[i : i + 1]}) for i in range(n)]
        ),
        f"1 classifier run of {n} crops (SDK)": lambda: cls.run(None, {"input": batch}),
    }
    print(f"== {sc.name}: {n} crops, {rounds} rounds, classifier with ORT default options")
    _report(measure_interleaved(fns, rounds))


def cmd_decode(rounds: int) -> None:
    small = bench_scenes()[1].data
    rgb = load_image(small)
    big_rgb = cv2.resize(rgb, (3024, 4032), interpolation=cv2.INTER_CUBIC)
    _, buf = cv2.imencode(".jpg", big_rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    big = buf.tobytes()
    from PIL import Image

    def cv(data: bytes) -> Any:
        return cv2.cvtColor(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        )

    for label, data in (("480x640", small), ("3024x4032 (12 MP)", big)):
        same = bool(np.array_equal(load_image(data), cv(data)))
        print(f"== {label}: {len(data) / 1e3:.0f} kB, cv2 pixels identical to SDK's: {same}")
        fns: dict[str, Callable[[], object]] = {
            "SDK load_image (PIL)": lambda d=data: load_image(d),
            "cv2.imdecode + cvtColor": lambda d=data: cv(d),
            "PIL draft (DCT 1/2 scale)": lambda d=data: _pil_draft(Image, d),
        }
        _report(measure_interleaved(fns, rounds), "SDK load_image (PIL)")


def _pil_draft(image_mod: Any, data: bytes) -> object:
    im = image_mod.open(io.BytesIO(data))
    im.draft("RGB", (im.width // 2, im.height // 2))
    return np.asarray(im.convert("RGB"))


def _cv2_nms(boxes: Any, scores: Any, thr: float, max_keep: int) -> Any:
    """``cv2.dnn.NMSBoxes`` on the SDK's xyxy boxes, cut to ``max_keep`` afterwards (its
    ``top_k`` cuts the candidates before suppression, which changes the result)."""
    if boxes.shape[0] == 0:
        return np.empty((0,), np.intp)
    xywh = boxes.astype(np.float64)
    xywh[:, 2:] -= xywh[:, :2]
    idx = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float32), 0.0, float(thr))
    return np.asarray(idx, np.intp).reshape(-1)[:max_keep]


def _nms_cases(rng: Any, n: int, pills: int | None) -> tuple[Any, Any]:
    """``pills`` objects each seen by ~n/pills jittered candidates, or (None) n scattered
    boxes that barely overlap (the case where early stopping at ``max_keep`` matters)."""
    if pills is None:
        xy = rng.uniform([0, 0], [1280, 960], (n, 2))
        wh = rng.uniform(10, 120, (n, 2))
    else:
        centres = rng.uniform([50, 50], [1230, 910], (pills, 2))
        sizes = rng.uniform(20, 90, (pills, 2))
        owner = rng.integers(0, pills, n)
        xy = centres[owner] + rng.normal(0, 4, (n, 2))
        wh = sizes[owner] * rng.uniform(0.85, 1.15, (n, 2))
        xy = xy - wh / 2
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    return boxes, rng.uniform(0.25, 0.95, n).astype(np.float32)


def cmd_nms(rounds: int) -> None:
    """Same kept boxes? and time per call, on the real candidates of the 22-pill table
    (default bundle) and on synthetic sets of 22, 300 and 3000 boxes."""
    import pillsnap_sdk.postprocess as post
    from pillsnap_sdk import Identifier
    from pillsnap_sdk.boxes import nms
    from pillsnap_sdk.defaults import default_bundle_path

    seen: list[tuple[Any, Any, float, int]] = []

    def spy(b: Any, s: Any, t: float, k: int) -> Any:
        seen.append((b.copy(), s.copy(), t, k))
        return nms(b, s, t, k)

    post.nms = spy  # type: ignore[assignment]
    repo = Path(__file__).resolve().parent.parent
    Identifier.from_bundle(default_bundle_path()).identify(repo / "examples/table_22_pills.jpg")
    post.nms = nms
    rng = np.random.default_rng(0)
    cases = list(seen)
    for i in range(300):
        n = int(rng.integers(1, 3000))
        b, s = _nms_cases(rng, n, max(1, n // int(rng.integers(3, 40))) if i % 2 else None)
        cases.append((b, s, 0.5, 100 if i % 3 else 10_000))
    same = sum(np.array_equal(nms(*c), _cv2_nms(*c)) for c in cases)
    print(f"== same kept indices, same order: {same}/{len(cases)} cases")
    # Pairs built at IoU 0.5 (B = A shifted by a third of its width), +- float noise.
    differ = 0
    for _ in range(20_000):
        (x, y), (w, h) = rng.uniform(0, 1000, 2), rng.uniform(5, 200, 2)
        d = w / 3 * (1 + rng.normal(0, 1e-6))
        b = np.array([[x, y, x + w, y + h], [x + d, y, x + d + w, y + h]], np.float32)
        c = (b, np.array([0.9, 0.8], np.float32), 0.5, 100)
        differ += not np.array_equal(nms(*c), _cv2_nms(*c))
    print(f"== pairs at IoU 0.5 +- 1e-6 decided differently: {differ}/20000")
    sets = [("table_22_pills.jpg candidates", seen[0][0], seen[0][1], 100)]
    for n, pills in ((22, 22), (300, 22), (3000, 100), (3000, None)):
        b, s = _nms_cases(np.random.default_rng(n), n, pills)
        sets.append((f"{n} boxes, {pills or 'scattered'} pills", b, s, 100))
    for label, b, s, k in sets:
        reps = max(1, 2000 // len(b))
        fns: dict[str, Callable[[], object]] = {
            "numpy (pillsnap_sdk.boxes.nms)": lambda b=b, s=s, k=k, r=reps: [
                nms(b, s, 0.5, k) for _ in range(r)
            ],
            "cv2.dnn.NMSBoxes": lambda b=b, s=s, k=k, r=reps: [
                _cv2_nms(b, s, 0.5, k) for _ in range(r)
            ],
        }
        print(f"== {label} -> {len(nms(b, s, 0.5, k))} kept; ms per {reps} calls")
        _report(measure_interleaved(fns, rounds), "numpy (pillsnap_sdk.boxes.nms)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["options", "rss", "chunks", "ablation", "decode", "nms"])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--bundle", help="bundle (default: the cached bench bundle)")
    a = p.parse_args()
    if a.what == "rss":
        cmd_rss(a.bundle)
    elif a.what == "decode":
        cmd_decode(a.rounds)
    elif a.what == "nms":
        cmd_nms(a.rounds)
    else:
        {"options": cmd_options, "chunks": cmd_chunks, "ablation": cmd_ablation}[a.what](
            _bundle(a.bundle), a.rounds
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
