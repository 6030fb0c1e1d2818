"""Hostile inputs, generated: random arrays and bytes, mutated valid files, 10k
mutations and a crash-safety run of the corpus in a child process.

Why apart from test_inputs.py: the same promise (a result or an InvalidImageError in
bounded time), checked by search instead of by a fixed corpus.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pillsnap_sdk import Identifier, InvalidImageError
from pillsnap_sdk.image import load_image

from .badfiles import (
    mutate,
    seed_files,
)
from .inputs_common import (
    HYPO,
    TOP_K,
    bounded,
    check_result,
)

# Hostile headers make PIL warn (bomb-sized claims, TIFF tags past the end of file); the
# SDK refuses those files anyway, and the warnings are PIL's to emit, not failures here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
]

# -- property-based ------------------------------------------------------------------------------
_DTYPES = st.sampled_from(
    [
        np.uint8,
        np.int8,
        np.uint16,
        np.int16,
        np.int32,
        np.float16,
        np.float32,
        np.float64,
        np.bool_,
        np.complex64,
    ]
)
_LAYOUTS = ("plain", "step", "reverse", "transpose", "fortran")


def _relayout(arr: np.ndarray, layout: str) -> np.ndarray:
    if arr.ndim == 0:
        return arr
    if layout == "step":
        return arr[::2]
    if layout == "reverse":
        return arr[..., ::-1]
    if layout == "transpose" and arr.ndim >= 2:
        return arr.swapaxes(0, 1)
    if layout == "fortran":
        return np.asfortranarray(arr)
    return arr


def _legal(arr: np.ndarray) -> bool:
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        return False
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
        return False
    return arr.shape[0] >= 1 and arr.shape[1] >= 1


@settings(HYPO, max_examples=150)
@given(
    arr=hnp.arrays(
        dtype=_DTYPES,
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9),
    ),
    layout=st.sampled_from(_LAYOUTS),
    mode=st.sampled_from(["auto", "single"]),
    det=st.booleans(),
)
def test_random_arrays(
    idf_det: Identifier,
    idf_nodet: Identifier,
    arr: np.ndarray,
    layout: str,
    mode: str,
    det: bool,
) -> None:
    """Any array: the exact legal set (uint8; HxW, HxWx1/3/4; non-empty) is accepted and
    decoded to the same pixels whatever its memory layout; everything else is refused."""
    arr = _relayout(arr, layout)
    idf = idf_det if det else idf_nodet
    if not _legal(arr):
        with pytest.raises(InvalidImageError, match=r"dtype uint8|must be HxWx3|no pixels"):
            bounded(lambda: idf.identify(arr, mode=mode))  # type: ignore[arg-type]
        return
    h, w = arr.shape[:2]
    res = bounded(lambda: idf.identify(arr, mode=mode))  # type: ignore[arg-type]
    check_result(res, (w, h))
    rgb = load_image(arr)
    assert rgb.flags.c_contiguous and rgb.dtype == np.uint8 and rgb.shape == (h, w, 3)
    if arr.ndim == 2 or arr.shape[2] == 1:
        assert np.array_equal(rgb, np.repeat(arr.reshape(h, w, 1), 3, axis=2))
    elif arr.shape[2] == 3:
        assert np.array_equal(rgb, arr)


@settings(HYPO, max_examples=150)
@given(data=st.binary(max_size=1024), det=st.booleans())
def test_random_bytes(idf_det: Identifier, idf_nodet: Identifier, data: bytes, det: bool) -> None:
    """Arbitrary bytes: a result (if they happen to be an image) or InvalidImageError."""
    idf = idf_det if det else idf_nodet
    for value in (data, bytearray(data), memoryview(data)):
        try:
            check_result(bounded(lambda v=value: idf.identify(v, top_k=TOP_K)), None)
        except InvalidImageError as exc:
            assert str(exc)


_SEEDS = seed_files()
_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "cut", "insert", "dup"]),
        st.floats(0.0, 1.0),
        st.binary(min_size=1, max_size=16),
    ),
    min_size=1,
    max_size=4,
)


def _apply(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, where, blob in edits:
        pos = min(int(where * len(buf)), max(len(buf) - 1, 0))
        if op == "flip" and buf:
            buf[pos] ^= blob[0] or 0xFF
        elif op == "cut":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = blob
        else:
            buf[pos:pos] = buf[pos : pos + len(blob) * 4]
    return bytes(buf)


@settings(HYPO, max_examples=200)
@given(seed=st.sampled_from(sorted(_SEEDS)), edits=_EDITS, det=st.booleans())
def test_mutated_valid_files(
    idf_det: Identifier,
    idf_nodet: Identifier,
    seed: str,
    edits: list[tuple[str, float, bytes]],
    det: bool,
) -> None:
    """Valid JPEG/PNG/GIF/BMP/TIFF/WebP with flipped, cut, inserted or duplicated bytes:
    the decoders' deepest code paths, reached through the real API."""
    data = _apply(_SEEDS[seed], edits)
    idf = idf_det if det else idf_nodet
    try:
        check_result(bounded(lambda: idf.identify(data, top_k=TOP_K)), None)
    except InvalidImageError as exc:
        assert str(exc)


@pytest.mark.slow
def test_fuzz_10k_mutations(idf_det: Identifier) -> None:
    """The long fuzz: 10,000 seeded mutations of every seed format (reproducible by seed)."""
    outcomes = {"ok": 0, "refused": 0}
    names = sorted(_SEEDS)
    for i in range(10_000):
        name = names[i % len(names)]
        data = mutate(_SEEDS[name], seed=i)
        try:
            check_result(bounded(lambda d=data: idf_det.identify(d, top_k=TOP_K)), None)
            outcomes["ok"] += 1
        except InvalidImageError:
            outcomes["refused"] += 1
    print("FUZZ", json.dumps(outcomes))
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0, outcomes


# -- crash safety: a segfault would kill the server, so run the corpus in a child ----------------
_CHILD = r"""
import sys
sys.path[:0] = sys.argv[2:4]
from badfiles import array_cases, corpus, mutate, seed_files
from pillsnap_sdk import Identifier, InvalidImageError
from PIL import Image
import io, json, warnings
warnings.simplefilter("ignore")
counts = {"ok": 0, "refused": 0}
for bundle in sys.argv[1].split(","):
    idf = Identifier.from_bundle(bundle)
    values = []
    for case in corpus():
        values += [case.data, bytearray(case.data)]
        try:
            values.append(Image.open(io.BytesIO(case.data)))
        except Exception:
            pass
    values += [a.make() for a in array_cases()]
    seeds = seed_files()
    values += [mutate(data, seed=i) for i in range(int(sys.argv[4])) for data in seeds.values()]
    for v in values:
        try:
            idf.identify(v)
            counts["ok"] += 1
        except InvalidImageError:
            counts["refused"] += 1
print("SURVIVED " + json.dumps(counts))
"""


def test_corpus_cannot_crash_the_process(tiny_bundle: Path, tiny_bundle_nodet: Path) -> None:
    """Run the whole corpus (+ 360 mutations) in a child interpreter: a segfault or abort in
    a native decoder shows up as a negative return code instead of killing pytest."""
    here = Path(__file__).resolve().parent
    cmd = [
        sys.executable,
        "-X",
        "faulthandler",
        "-c",
        _CHILD,
        f"{tiny_bundle},{tiny_bundle_nodet}",
        str(here),
        str(here.parent),
        "40",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} "
        f"({'killed by signal ' + str(-proc.returncode) if proc.returncode < 0 else 'error'})"
        f"\n{proc.stderr[-4000:]}"
    )
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("SURVIVED ")
    counts = json.loads(line.removeprefix("SURVIVED "))
    assert counts["ok"] > 50 and counts["refused"] > 50, counts
