"""Golden test: ``pillsnap_sdk.preprocessing`` against committed reference values.

Training, the export checks and serving all call the same ``preprocess``, so comparing them
with each other cannot catch a wrong resize, interpolation or normalisation: it changes
every side at once (``tests/train/test_train_serve_wiring.py`` checks only that wiring).
This test compares the SDK with the outputs stored in ``golden/preprocessing.json`` for
small fixed inputs (stored in the same file): every resize mode x every interpolation,
enlarging and shrinking, the defaults, the colour order with per-channel mean/std, the pad
value, crop_pct and a no-op resize. It never regenerates them.

A reference that no longer matches means the network input changed for every bundle in the
field. If the change is intended, rewrite those references deliberately
(``python tests/sdk/golden/make_golden.py --rewrite 'GLOB'``) and say why in the commit. A new
interpolation or resize mode needs its references first: ``python tests/sdk/golden/make_golden.py``
adds the missing cases and leaves the existing ones alone.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import typing
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from pillsnap_sdk.preprocessing import PreprocessSpec, preprocess, preprocess_batch, resize_image

GOLDEN_FILE = Path(__file__).resolve().parent / "golden" / "preprocessing.json"
GOLDEN: dict[str, Any] = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
CASES: dict[str, dict[str, Any]] = GOLDEN["cases"]
DIRECTIONS = ("enlarge", "shrink")
#: The four OpenCV modes: their references must differ pairwise, or the inputs are too
#: smooth to pin them. (A mode that picks one of these by scale may equal one of them.)
BASE_INTERPOLATIONS = ("nearest", "linear", "area", "cubic")
REGENERATE = "python tests/sdk/golden/make_golden.py"


def _literal_values(annotation: Any) -> list[str]:
    out: list[str] = []
    for arg in typing.get_args(annotation):
        out.extend([arg] if isinstance(arg, str) else _literal_values(arg))
    return out


def _supported(field: str) -> list[str]:
    return _literal_values(PreprocessSpec.model_fields[field].annotation)


def _decode(entry: dict[str, Any], key: str, dtype: str) -> npt.NDArray[Any]:
    raw = base64.b64decode(entry[key])
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(entry["shape"])


def _input(name: str) -> npt.NDArray[np.uint8]:
    entry = GOLDEN["inputs"][name]
    arr: npt.NDArray[np.uint8] = _decode(entry, "uint8_b64", "|u1")
    assert hashlib.sha256(arr.tobytes()).hexdigest() == entry["sha256"], name
    return arr


def _where(case: dict[str, Any]) -> str:
    made = case["made_with"]
    return (
        f"reference made with opencv {made['opencv']}, numpy {made['numpy']}; "
        f"running opencv {cv2.__version__}, numpy {np.__version__}"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_preprocess_matches_committed_reference(name: str) -> None:
    case = CASES[name]
    spec = PreprocessSpec(**case["spec"])
    rgb = _input(case["input"])
    want_resized = _decode(case["resized"], "uint8_b64", "|u1")
    want_tensor = _decode(case["tensor"], "float32_le_b64", "<f4")

    resized, box = resize_image(rgb, spec)
    assert resized.shape == want_resized.shape, name
    diff = np.abs(resized.astype(np.int16) - want_resized.astype(np.int16))
    n_diff = int((diff > 0).sum())
    # OpenCV picks a SIMD path per CPU (AVX2 vs AVX-512) and those paths may round a
    # resampled value 1 LSB apart (2 of 297 bicubic-shrink values on an AVX2-only EPYC,
    # same OpenCV build). A real preprocessing change (mode, interpolation, channel order,
    # pad) moves many values by far more, so this tolerance still catches it.
    assert int(diff.max(initial=0)) <= 1 and n_diff <= max(2, diff.size // 100), (
        f"{name}: resize_image differs from the reference in {n_diff} of {diff.size} "
        f"values (max {int(diff.max())}); {_where(case)}"
    )
    geometry = case["geometry"]
    assert (box.scale_x, box.scale_y, box.pad_x, box.pad_y) == pytest.approx(
        (geometry["scale_x"], geometry["scale_y"], geometry["pad_x"], geometry["pad_y"]),
        rel=1e-12,
    ), name

    tensor, _ = preprocess(rgb, spec)
    assert tensor.dtype == np.float32 and tensor.shape == want_tensor.shape, name
    # A pixel 1 LSB off (above) moves its tensor value by 1/(255*std); nothing else may move.
    lsb = 1.0 / (255.0 * min(abs(s) for s in spec.std))
    atol = 1e-6 if n_diff == 0 else lsb + 1e-5
    np.testing.assert_allclose(
        tensor, want_tensor, rtol=0, atol=atol, err_msg=f"{name}: preprocess; {_where(case)}"
    )
    assert int((np.abs(tensor - want_tensor) > 1e-5).sum()) <= n_diff, name
    for c, y, x, value in case["tensor"]["samples"]:  # the numbers a reviewer reads
        assert float(want_tensor[c, y, x]) == pytest.approx(value, abs=1e-6), (name, c, y, x)
    batch, _ = preprocess_batch([rgb, rgb], spec)
    np.testing.assert_allclose(batch, np.stack([tensor] * 2), rtol=0, atol=1e-6)


def test_references_cover_every_resize_mode_and_interpolation() -> None:
    """A mode the SDK accepts without references for enlarging and shrinking fails here."""
    resize_modes, interpolations = _supported("resize"), _supported("interpolation")
    assert set(BASE_INTERPOLATIONS) <= set(interpolations)
    missing = [
        f"{r}/{i}/{d}"
        for r, i, d in itertools.product(resize_modes, interpolations, DIRECTIONS)
        if f"{r}/{i}/{d}" not in CASES
    ]
    assert not missing, f"no committed reference for {missing}: run `{REGENERATE}`"
    for name, case in CASES.items():
        resize, interp, *rest = name.split("/")
        if rest and rest[0] in DIRECTIONS:  # a grid case says what it is
            assert (case["spec"]["resize"], case["spec"]["interpolation"]) == (resize, interp)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_reference_directions_really_enlarge_and_shrink(direction: str) -> None:
    for name, case in CASES.items():
        if not name.endswith(f"/{direction}"):
            continue
        in_h, in_w = GOLDEN["inputs"][case["input"]]["shape"][:2]
        out_h, out_w = case["spec"]["size"]
        grows = out_h > in_h and out_w > in_w
        shrinks = out_h < in_h and out_w < in_w
        assert grows if direction == "enlarge" else shrinks, (name, (in_h, in_w), (out_h, out_w))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("resize", ["center-crop", "letterbox", "stretch"])
def test_references_tell_the_interpolations_apart(resize: str, direction: str) -> None:
    """The inputs are busy enough that swapping any two OpenCV modes changes pixels."""
    outs = {
        i: _decode(CASES[f"{resize}/{i}/{direction}"]["resized"], "uint8_b64", "|u1")
        for i in BASE_INTERPOLATIONS
    }
    for a, b in itertools.combinations(BASE_INTERPOLATIONS, 2):
        differ = int((outs[a] != outs[b]).sum())
        assert differ >= 10, f"{resize}/{direction}: {a} and {b} differ in only {differ} values"


def test_colour_order_and_per_channel_normalisation_references() -> None:
    """The BGR reference is the RGB one with channels 0 and 2 swapped, and mean/std apply
    per *source* channel (a read of the stored numbers, independent of the SDK)."""
    rgb = _decode(CASES["colour-order/RGB"]["tensor"], "float32_le_b64", "<f4")
    bgr = _decode(CASES["colour-order/BGR"]["tensor"], "float32_le_b64", "<f4")
    np.testing.assert_array_equal(bgr, rgb[::-1])
    resized = _decode(CASES["colour-order/RGB"]["resized"], "uint8_b64", "|u1")
    mean = np.array(CASES["colour-order/RGB"]["spec"]["mean"])
    std = np.array(CASES["colour-order/RGB"]["spec"]["std"])
    formula = ((resized / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(rgb, formula, atol=1e-6)


@pytest.mark.parametrize("resize", ["center-crop", "letterbox", "stretch"])
def test_area_linear_references_are_area_shrinking_and_linear_enlarging(resize: str) -> None:
    """``area-linear`` as documented: INTER_AREA when the image shrinks, INTER_LINEAR when it
    grows (a read of the stored references; the SDK is compared with them above)."""
    for direction, same_as in (("shrink", "area"), ("enlarge", "linear")):
        got = CASES[f"{resize}/area-linear/{direction}"]["resized"]
        assert got == CASES[f"{resize}/{same_as}/{direction}"]["resized"], (resize, direction)
