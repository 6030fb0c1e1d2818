"""Static INT8 builds: layer roles found by walking the graph, float layers stay float, and
the ``export.int8`` config block (its absence keeps old work dirs' config hash)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pillsnap_train.config import ExportConfig
from pillsnap_train.export.add_variants import card_with_variants, next_minor
from pillsnap_train.export.int8 import (
    Int8Options,
    build_int8,
    calibration_sample,
    keep_float_nodes,
)

SIZE = 32


def small_convnet(
    path: Path, *, rename: str = "", classes: int = 4, size: int = SIZE, wide: int = 1
) -> Path:
    """input -> stem conv + Clip -> depthwise conv + Clip -> 1x1 conv + Relu -> GAP ->
    Flatten -> Gemm -> logits; ``rename`` prefixes every node name; ``wide`` multiplies
    the channels (weights large enough for int8 to be smaller than fp32)."""
    c1, c3 = 8 * wide, 16 * wide
    rng = np.random.default_rng(0)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    lo, hi = (
        numpy_helper.from_array(np.float32(0), "lo"),
        numpy_helper.from_array(np.float32(6), "hi"),
    )
    nodes = [
        helper.make_node(
            "Conv", ["input", "w1"], ["c1"], "stem_conv", strides=[2, 2], pads=[1] * 4
        ),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"], "stem_act"),
        helper.make_node("Conv", ["a1", "w2"], ["c2"], "dw_conv", group=c1, pads=[1] * 4),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["a2"], "dw_act"),
        helper.make_node("Conv", ["a2", "w3"], ["c3"], "pw_conv"),
        helper.make_node("Relu", ["c3"], ["a3"], "pw_act"),
        helper.make_node("GlobalAveragePool", ["a3"], ["gap"], "pool"),
        helper.make_node("Flatten", ["gap"], ["flat"], "flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], "fc", transB=1),
    ]
    for n in nodes:
        n.name = rename + n.name
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            w("w1", c1, 3, 3, 3),
            w("w2", c1, 1, 3, 3),
            w("w3", c3, c1, 1, 1),
            w("wf", classes, c3),
            numpy_helper.from_array(np.zeros(classes, np.float32), "bf"),
            lo,
            hi,
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("prefix", ["", "x/"])
def test_roles_are_found_by_structure_not_by_name(tmp_path: Path, prefix: str) -> None:
    model = onnx.load(str(small_convnet(tmp_path / "m.onnx", rename=prefix)))
    p = prefix
    assert keep_float_nodes(model, ["stem"]) == [f"{p}stem_conv", f"{p}stem_act"]
    assert keep_float_nodes(model, ["head"]) == [f"{p}pool", f"{p}flatten", f"{p}fc"]
    assert keep_float_nodes(model, ["last_conv"]) == [f"{p}pw_conv", f"{p}pw_act"]
    assert keep_float_nodes(model, ["depthwise"]) == [f"{p}dw_conv"]
    assert keep_float_nodes(model, ["first_block"]) == [f"{p}dw_conv", f"{p}dw_act"]
    both = keep_float_nodes(model, ["stem", "head", "stem"])
    assert both == [f"{p}stem_conv", f"{p}stem_act", f"{p}pool", f"{p}flatten", f"{p}fc"]


def test_a_role_the_graph_lacks_is_an_error(tmp_path: Path) -> None:
    model = onnx.load(str(small_convnet(tmp_path / "m.onnx")))
    model.graph.node[2].attribute[0].i = 1  # no depthwise conv any more
    with pytest.raises(ValueError, match="depthwise"):
        keep_float_nodes(model, ["depthwise"])
    with pytest.raises(ValueError, match="unknown keep_float group"):
        keep_float_nodes(model, ["tail"])


def _float_weight_nodes(path: Path) -> set[str]:
    """Conv/Gemm nodes whose weight is a float initializer (not a DequantizeLinear)."""
    g = onnx.load(str(path)).graph
    inits = {t.name for t in g.initializer}
    return {n.name for n in g.node if n.op_type in ("Conv", "Gemm") and n.input[1] in inits}


def test_build_keeps_the_asked_layers_in_float_and_quantizes_the_rest(tmp_path: Path) -> None:
    src = small_convnet(tmp_path / "m.onnx")
    x = np.random.default_rng(1).uniform(-1, 1, (24, 3, SIZE, SIZE)).astype(np.float32)
    opts = Int8Options(keep_float=["stem", "head"], calibration_crops=24, batch=8)
    made = build_int8(src, tmp_path / "q.onnx", "input", x, opts)
    assert set(made.kept_float) >= {"stem_conv", "fc"}
    assert _float_weight_nodes(made.path) == {"stem_conv", "fc"}
    everything = build_int8(src, tmp_path / "all.onnx", "input", x, Int8Options(keep_float=[]))
    assert _float_weight_nodes(everything.path) == set()
    assert not (tmp_path / "q.pre.onnx").exists()  # the pre-processed copy is cleaned up

    import onnxruntime as ort

    def run(p: Path) -> Any:
        s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        return s.run(None, {"input": x})[0]

    ref, q = run(src), run(made.path)
    assert q.shape == ref.shape
    assert np.abs(q - ref).max() < 0.25 * np.abs(ref).max()  # quantized, not broken


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_builds(tmp_path: Path, method: str) -> None:
    src = small_convnet(tmp_path / "m.onnx")
    x = np.random.default_rng(2).uniform(-1, 1, (12, 3, SIZE, SIZE)).astype(np.float32)
    opts = Int8Options(calibration=method, batch=4)  # type: ignore[arg-type]
    made = build_int8(src, tmp_path / "q.onnx", "input", x, opts)
    assert made.path.is_file()


def test_calibration_sample_is_seeded_and_without_repeats() -> None:
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    a, b = calibration_sample(x, 30, 0), calibration_sample(x, 30, 0)
    assert np.array_equal(a, b) and len(np.unique(a)) == 30
    assert len(calibration_sample(x, 500, 0)) == 100


def test_unset_int8_block_keeps_the_dump_and_the_old_recipe() -> None:
    old = ExportConfig(variants=["int8"], int8_calibration_crops=64)
    assert "int8" not in old.model_dump() and '"int8":' not in old.model_dump_json()
    legacy = old.int8_options
    assert legacy.keep_float == [] and legacy.calibration_crops == 64
    assert legacy.reduce_range is False
    new = ExportConfig.model_validate({"variants": ["int8"], "int8": {}})
    assert new.int8_options == Int8Options()
    assert new.model_dump()["int8"]["keep_float"] == ["stem", "first_block", "head"]
    with pytest.raises(ValueError):
        ExportConfig.model_validate({"int8": {"keep_float": ["tail"]}})


def test_next_minor_and_card_section() -> None:
    assert next_minor("2.0.0") == "2.1.0" and next_minor("1.4.7") == "1.5.0"
    card = "# b 2.0.0\n\ntext\n\n## Precision variants\n\n| old |\n\n## Latency\n\nrows\n"
    row = {
        "precision": "int8",
        "top1": 0.874,
        "top1_drop": 0.004,
        "latency_ms": 10.0,
        "speedup": 2.0,
        "size_bytes": 3_900_000,
        "released": True,
        "reason": "ok",
        "build": {
            "calibration": "minmax",
            "n_calibration": 512,
            "per_channel": True,
            "reduce_range": True,
            "keep_float": ["stem", "head"],
            "kept_float_nodes": ["a", "b"],
        },
    }
    out = card_with_variants(card, "2.0.0", "2.1.0", [row], "cmd")
    assert out.startswith("# b 2.1.0\n")
    assert "| old |" not in out and "| int8 | 87.4 % | 0.40 |" in out
    assert "## Latency\n\nrows" in out and "kept in float: stem, head" in out
