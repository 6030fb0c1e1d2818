"""Write the committed reference values of ``pillsnap_sdk.preprocessing`` (``preprocessing.json``).

The test (``tests/sdk/test_golden_preprocessing.py``) compares the SDK against the file this
script wrote, never against a fresh run of it. Run it only to add references for something
new, or to replace references after an intended, reviewed change:

    python tests/sdk/golden/make_golden.py                 # add the missing cases only
    python tests/sdk/golden/make_golden.py --rewrite 'letterbox/linear/*'   # replace some

By default existing entries and inputs are never touched, so a new interpolation or resize
mode gets its references by re-running this script after the mode exists in
``PreprocessSpec`` (the test fails until it has them), and a rewrite is a deliberate act
whose diff shows which cases changed.

Case names: ``<resize>/<interpolation>/<enlarge|shrink>`` for the grid of every resize mode
x every interpolation the SDK accepts (ImageNet mean/std), plus named cases for the
defaults, the colour order with per-channel mean/std, the letterbox pad value, crop_pct and
a no-op resize. Every case stores its input's name, the spec fields it sets, the geometry,
the exact ``uint8`` output of ``resize_image`` and the exact ``float32`` tensor of
``preprocess`` (base64), plus a few sampled values to read by eye.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pillsnap_sdk.preprocessing import PreprocessSpec, preprocess, resize_image

GOLDEN = Path(__file__).resolve().parent / "preprocessing.json"

#: direction -> (input name, output (height, width)). Non-integer scale factors on both
#: axes (so linear and cubic do not both land on pixel centres), and an aspect ratio
#: unlike the input's (so letterbox pads and center-crop cuts).
DIRECTIONS: dict[str, tuple[str, tuple[int, int]]] = {
    "enlarge": ("gradient-7x5", (12, 10)),
    "shrink": ("gradient-40x30", (11, 9)),
}
IMAGENET: dict[str, Any] = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

#: Named cases beyond the grid: (input name, spec fields).
EXTRA_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # Only the size: pins every default (letterbox, linear, RGB, mean 0, std 1, pad 114).
    "defaults/enlarge": ("gradient-7x5", {"size": (12, 10)}),
    "defaults/shrink": ("gradient-40x30", {"size": (11, 9)}),
    # A different mean and std per channel: a channel taking another's mean/std shows.
    "colour-order/RGB": (
        "gradient-40x30",
        {"size": (11, 9), "mean": (0.1, 0.5, 0.9), "std": (0.2, 0.4, 0.8)},
    ),
    "colour-order/BGR": (
        "gradient-40x30",
        {"size": (11, 9), "mean": (0.1, 0.5, 0.9), "std": (0.2, 0.4, 0.8), "colour_order": "BGR"},
    ),
    "pad-value/0": ("gradient-7x5", {"size": (12, 10), "pad_value": 0, **IMAGENET}),
    "crop-pct/0.875": (
        "gradient-40x30",
        {"size": (11, 9), "resize": "center-crop", "crop_pct": 0.875, **IMAGENET},
    ),
    "same-size/no-resize": ("gradient-7x5", {"size": (5, 7), **IMAGENET}),
}


def literal_values(annotation: Any) -> list[str]:
    """The strings a ``Literal`` (or a union of them) allows, in declaration order."""
    out: list[str] = []
    for arg in typing.get_args(annotation):
        if isinstance(arg, str):
            out.append(arg)
        else:
            out.extend(literal_values(arg))
    return out


def supported_resize_modes() -> list[str]:
    return literal_values(PreprocessSpec.model_fields["resize"].annotation)


def supported_interpolations() -> list[str]:
    return literal_values(PreprocessSpec.model_fields["interpolation"].annotation)


def grid_name(resize: str, interpolation: str, direction: str) -> str:
    return f"{resize}/{interpolation}/{direction}"


def gradient(height: int, width: int) -> npt.NDArray[np.uint8]:
    """R: left-to-right ramp, G: top-to-bottom ramp, B: a high-frequency pattern.

    The ramps make geometry and channel order visible; the pattern makes every
    interpolation give different pixels (a smooth ramp alone hides linear vs area).
    """
    y, x = np.mgrid[0:height, 0:width]
    r = np.round(255 * x / (width - 1))
    g = np.round(255 * y / (height - 1))
    b = (x * 67 + y * 131) % 256
    return np.dstack([r, g, b]).astype(np.uint8)


def encode(arr: npt.NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def decode(text: str, dtype: str, shape: list[int]) -> npt.NDArray[Any]:
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype)).reshape(shape)


def input_entry(arr: npt.NDArray[np.uint8]) -> dict[str, Any]:
    return {
        "shape": list(arr.shape),
        "uint8_b64": encode(arr),
        "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
    }


def load_input(golden: dict[str, Any], name: str) -> npt.NDArray[np.uint8]:
    entry = golden["inputs"][name]
    arr: npt.NDArray[np.uint8] = decode(entry["uint8_b64"], "|u1", entry["shape"])
    return arr


def spec_from_fields(fields: dict[str, Any]) -> PreprocessSpec:
    return PreprocessSpec(**fields)


def samples(tensor: npt.NDArray[np.float32]) -> list[list[float]]:
    """[channel, y, x, value] at the first, centre and last pixel of every channel."""
    _, h, w = tensor.shape
    points = [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]
    return [
        [c, y, x, round(float(tensor[c, y, x]), 6)]
        for c in range(tensor.shape[0])
        for y, x in points
    ]


def make_case(golden: dict[str, Any], input_name: str, fields: dict[str, Any]) -> dict[str, Any]:
    spec = spec_from_fields(fields)
    rgb = load_input(golden, input_name)
    resized, box = resize_image(rgb, spec)
    tensor, box2 = preprocess(rgb, spec)
    assert box == box2
    return {
        "input": input_name,
        # Which libraries made this reference (read when one breaks after an upgrade).
        "made_with": {"opencv": cv2.__version__, "numpy": np.__version__},
        "spec": json.loads(json.dumps(fields)),  # tuples -> lists, as read back
        "geometry": {
            "scale_x": box.scale_x,
            "scale_y": box.scale_y,
            "pad_x": box.pad_x,
            "pad_y": box.pad_y,
        },
        "resized": {"shape": list(resized.shape), "uint8_b64": encode(resized)},
        "tensor": {
            "shape": list(tensor.shape),
            "float32_le_b64": encode(tensor.astype("<f4")),
            "samples": samples(tensor),
        },
    }


def wanted_cases() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every case the SDK's current modes call for, by name."""
    cases: dict[str, tuple[str, dict[str, Any]]] = {}
    for resize in supported_resize_modes():
        for interp in supported_interpolations():
            for direction, (input_name, size) in DIRECTIONS.items():
                fields = {"resize": resize, "interpolation": interp, "size": size, **IMAGENET}
                cases[grid_name(resize, interp, direction)] = (input_name, fields)
    cases.update(EXTRA_CASES)
    return cases


def dumps(golden: dict[str, Any]) -> str:
    """Indented JSON with every list of plain numbers on one line (short, reviewable diffs)."""
    text = json.dumps(golden, indent=1, sort_keys=True)
    flat = re.sub(
        r"\[\s*(-?[0-9][-0-9.e+]*(?:,\s*-?[0-9][-0-9.e+]*)*)\s*\]",
        lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
        text,
    )
    return flat + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rewrite",
        nargs="+",
        default=[],
        metavar="GLOB",
        help="replace the existing entries whose names match (after an intended change)",
    )
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_args(argv)

    golden: dict[str, Any] = (
        json.loads(args.out.read_text(encoding="utf-8"))
        if args.out.is_file()
        else {"inputs": {}, "cases": {}}
    )
    golden["about"] = (
        "Reference outputs of pillsnap_sdk.preprocessing, compared by "
        "tests/sdk/test_golden_preprocessing.py. Written by tests/sdk/golden/make_golden.py "
        "(adds missing cases; --rewrite GLOB replaces some). Arrays are base64 of C-order bytes."
    )
    for name, size in (("gradient-7x5", (5, 7)), ("gradient-40x30", (30, 40))):
        golden["inputs"].setdefault(name, input_entry(gradient(*size)))

    added: list[str] = []
    rewritten: list[str] = []
    for name, (input_name, fields) in wanted_cases().items():
        exists = name in golden["cases"]
        rewrite = any(fnmatch.fnmatchcase(name, g) for g in args.rewrite)
        if exists and not rewrite:
            continue
        golden["cases"][name] = make_case(golden, input_name, fields)
        (rewritten if exists else added).append(name)
    golden["cases"] = dict(sorted(golden["cases"].items()))
    args.out.write_text(dumps(golden), encoding="utf-8")
    print(f"{args.out}: {len(added)} added, {len(rewritten)} rewritten", file=sys.stderr)
    for name in added:
        print(f"  + {name}", file=sys.stderr)
    for name in rewritten:
        print(f"  ~ {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
