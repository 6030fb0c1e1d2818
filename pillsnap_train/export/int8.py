"""Static INT8 (QDQ) classifiers: which layers stay float, and how activations are calibrated.

Why layers stay float: quantizing every layer of the 2.0.0 classifier cost 3.7 pt top-1
on its validation crops (its gate allows 1). Per-layer sensitivity (agreement with fp32
on training crops left out of calibration) put the loss at the start: the stem's output
(32 channels at 112x112, ReLU6) rounded to 8 bits before the first depthwise conv. Keeping
the stem and the layer reading its output in float, and the pooling + classifier Gemm
whose logits feed the temperature and abstention thresholds, keeps most of the speed:
they are 2 of the 49 convs and the final Gemm.

Why 7-bit weights by default: on x86 CPUs without VNNI (AVX2 only, like the 2-core box
the release was measured on) onnxruntime multiplies uint8 activations by int8 weights
with an instruction whose int16 pair sums saturate; full-range weights lost 2.4 pt more
there than 7-bit ones, and a VNNI CPU would not saturate, so the accuracy would depend on
the CPU. 7 bits cannot saturate: the gate's number holds everywhere.

Layers are named by *role* (``stem``, ``first_block``, ``last_conv``, ``head``,
``depthwise``) and found by walking the graph, never by node names: names change with
the exporter, the timm version and onnxruntime's pre-processing, roles do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CalibrationName",
    "Int8Build",
    "Int8Options",
    "KeepFloat",
    "build_int8",
    "calibration_sample",
    "keep_float_nodes",
]

F32 = npt.NDArray[np.float32]
KeepFloat = Literal["stem", "first_block", "last_conv", "head", "depthwise"]
CalibrationName = Literal["minmax", "entropy", "percentile"]

#: Ops that carry a layer's weights (what "a layer" is for keep-float purposes).
_COMPUTE = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
#: Elementwise ops that belong to the layer before them (folded BN, activation, bias).
_FOLLOWERS = frozenset(
    {
        "BatchNormalization",
        "Relu",
        "Clip",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "LeakyRelu",
        "Elu",
        "Tanh",
        "Mul",
        "Add",
    }
)

#: Ops between the last conv and the classifier layer (global pooling, flattening).
_POOLING = frozenset(
    {"GlobalAveragePool", "AveragePool", "ReduceMean", "Flatten", "Reshape", "Squeeze"}
)


_DEFAULT_KEEP: tuple[KeepFloat, ...] = ("stem", "first_block", "head")


class Int8Options(BaseModel):
    """How the INT8 classifier is built (``export.int8`` in a release config).

    The defaults are the best setting measured on pushin-pill-edge 2.0.0 (docs/
    performance.md, "INT8 classifier"): stem, first block and head in float, min-max
    ranges from every training crop, per-channel 7-bit weights.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Layer roles kept in float: ``stem`` (first conv + activation), ``first_block``
    #: (the layers reading the stem's output, so that output is not rounded either),
    #: ``last_conv`` (the conv before global pooling), ``head`` (the final Gemm/MatMul and
    #: the pooling in front of it), ``depthwise`` (every depthwise conv: little compute,
    #: per-channel ranges that vary most).
    keep_float: list[KeepFloat] = Field(default_factory=lambda: list(_DEFAULT_KEEP))
    #: Activation ranges: ``minmax`` (observed extremes), ``entropy`` (KL-optimal
    #: clipping), ``percentile`` (clip at ``percentile`` of |x|).
    calibration: CalibrationName = "minmax"
    #: Crops drawn (seeded) from the *training* split to calibrate on; never validation.
    #: The default takes every crop of a small split (pushin-pill: 993): with min-max
    #: ranges, a 512-crop draw cost one more validation crop than all of them.
    calibration_crops: int = Field(1024, ge=1)
    percentile: float = Field(99.999, gt=50.0, le=100.0)
    #: One scale per output channel of each weight (per-tensor loses accuracy on
    #: depthwise convs whose channels differ by orders of magnitude).
    per_channel: bool = True
    #: 7-bit weights. x86 CPUs without VNNI (AVX2 only) multiply uint8 x int8 with an
    #: instruction that saturates int16 pair sums; full-range int8 weights then give other
    #: answers there than on a VNNI CPU or ARM. 7 bits cannot saturate: one accuracy on
    #: every CPU, the one the gate measured.
    reduce_range: bool = True
    #: ``uint8`` weights (U8U8 kernels) avoid that saturation too, with 8 bits.
    weight_type: Literal["int8", "uint8"] = "int8"
    #: Crops per calibration run (memory: each run keeps every activation of the batch).
    batch: int = Field(16, ge=1)


@dataclass(frozen=True)
class Int8Build:
    """What :func:`build_int8` wrote: the file and the nodes it left in float."""

    path: Path
    kept_float: tuple[str, ...]


class _Reader:
    """A CalibrationDataReader over batches, with the ``__len__``/``set_range`` that
    onnxruntime's strided calibration needs (ranges are collected a few batches at a time,
    so the histogram methods do not hold every activation of every crop at once)."""

    def __init__(self, input_name: str, batches: Sequence[F32]) -> None:
        self._feeds = [{input_name: b} for b in batches]
        self._items = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._items = iter(self._feeds[start_index:end_index])

    def get_next(self) -> dict[str, F32] | None:
        return next(self._items, None)


def keep_float_nodes(model: Any, groups: Iterable[str]) -> list[str]:
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) in the given roles.

    Raises ``ValueError`` when a role cannot be found (e.g. ``head`` in a graph without a
    final Gemm/MatMul): silently quantizing a layer asked to stay float would ship a
    variant that is not the one measured.
    """
    graph = _Graph(model)
    found: list[str] = []
    for group in groups:
        nodes = graph.role(group)
        if not nodes:
            raise ValueError(f"keep_float {group!r}: no such layer in this graph")
        found += [n for n in nodes if n not in found]
    return found


class _Graph:
    """Producer/consumer maps of one ONNX graph, and the walks that find layer roles."""

    def __init__(self, model: Any) -> None:
        g = model.graph
        self.nodes = list(g.node)
        self.inits = {t.name: t for t in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.inits]
        self.outputs = [o.name for o in g.output]
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def role(self, group: str) -> list[str]:
        if group == "stem":
            first = self._first_compute()
            return self._with_followers(first) if first is not None else []
        if group == "first_block":
            return self._fed_by_stem()
        if group == "head":
            head = self._head()
            return self._pooling_before(head) + self._with_followers(head) if head else []
        if group == "last_conv":
            conv = self._last_conv()
            return self._with_followers(conv) if conv is not None else []
        if group == "depthwise":
            return [n.name for n in self.nodes if self._depthwise(n)]
        raise ValueError(f"unknown keep_float group {group!r}")

    def _first_compute(self) -> Any | None:
        """The first weight layer reached from the graph input (through casts, transposes
        or a normalisation Sub/Div in front of it)."""
        seen: set[int] = set()
        frontier = list(self.inputs)
        while frontier:
            tensor = frontier.pop(0)
            for n in self.consumers.get(tensor, []):
                if id(n) in seen:
                    continue
                seen.add(id(n))
                if n.op_type in _COMPUTE:
                    return n
                frontier += list(n.output)
        return None

    def _head(self) -> Any | None:
        """The last weight layer before a graph output (past a bias Add, Softmax...)."""
        for out in self.outputs:
            n = self.producer.get(out)
            while n is not None:
                if n.op_type in _COMPUTE:
                    return n
                n = self._data_producer(n)
        return None

    def _fed_by_stem(self) -> list[str]:
        """The weight layers reading the stem's output (and their activations): kept in
        float with the stem, the stem's output is never rounded to 8 bits."""
        first = self._first_compute()
        if first is None:
            return []
        stem = set(self._with_followers(first))
        out: list[str] = []
        for n in self.nodes:
            if n.name in stem or n.op_type not in _COMPUTE:
                continue
            if any(
                self.producer.get(i) is not None and self.producer[i].name in stem for i in n.input
            ):
                out += [m for m in self._with_followers(n) if m not in out]
        return out

    def _pooling_before(self, head: Any) -> list[str]:
        """The pooling/flatten ops between the last conv and ``head``: left quantized,
        they round the pooled features to 8 bits right before the logits."""
        out: list[str] = []
        n = self._data_producer(head)
        while n is not None and n.op_type in _POOLING:
            out.insert(0, n.name)
            n = self._data_producer(n)
        return out

    def _last_conv(self) -> Any | None:
        """The conv feeding the head through pooling/flatten/activations."""
        head = self._head()
        n = self._data_producer(head) if head is not None else None
        while n is not None:
            if n.op_type in ("Conv", "ConvTranspose"):
                return n
            n = self._data_producer(n)
        return None

    def _data_producer(self, node: Any) -> Any | None:
        """The node producing ``node``'s first non-weight input."""
        for i in node.input:
            if i and i not in self.inits and i in self.producer:
                return self.producer[i]
        return None

    def _with_followers(self, node: Any) -> list[str]:
        """``node`` plus the elementwise ops that only post-process its output (folded
        BN, activation, swish's Sigmoid*Mul, a bias Add): a Mul or Add joins only when
        every non-weight input comes from the layer itself, so a residual Add or an SE
        scale is not pulled in."""
        group = [node]
        made = set(node.output)
        changed = True
        while changed:
            changed = False
            for tensor in list(made):
                for c in self.consumers.get(tensor, []):
                    if c in group or c.op_type not in _FOLLOWERS:
                        continue
                    data = [i for i in c.input if i and i not in self.inits]
                    if c.op_type in ("Mul", "Add") and not all(i in made for i in data):
                        continue
                    group.append(c)
                    made.update(c.output)
                    changed = True
        return [n.name for n in group]

    def _depthwise(self, node: Any) -> bool:
        if node.op_type != "Conv" or len(node.input) < 2:
            return False
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        w = self.inits.get(node.input[1])
        return bool(group > 1 and w is not None and len(w.dims) == 4 and w.dims[1] == 1)


def _name_nodes(model: Any) -> None:
    """Give unnamed nodes a unique name: exclusions are by name."""
    used = {n.name for n in model.graph.node if n.name}
    for k, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{k}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)


def _stride(n_batches: int, most: int = 4) -> int:
    """Batches per calibration pass: a divisor of ``n_batches`` (onnxruntime's rule)."""
    return max(d for d in range(1, min(most, n_batches) + 1) if n_batches % d == 0)


#: Node-name prefix of a familiarity gate (:mod:`..classifier.familiarity`; kept here so
#: this module does not import torch).
GATE_PREFIX = "/gate/"


def build_int8(
    src: Path,
    dst: Path,
    input_name: str,
    calibration: F32 | Sequence[F32],
    options: Int8Options | None = None,
    *,
    calibration_cache: Path | None = None,
) -> Int8Build:
    """Write a static INT8 QDQ model of ``src`` to ``dst``, calibrated on ``calibration``
    (crops as one array, or already in batches), with ``options.keep_float`` in float.

    ``calibration_cache`` (onnxruntime >= 1.23) keeps the activation ranges in a file and
    reuses them: the ranges depend on the model, crops and method, not on which layers
    stay float, so a sweep over ``keep_float`` calibrates once per method.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    opts = options or Int8Options()
    if isinstance(calibration, np.ndarray):
        batches = [calibration[i : i + opts.batch] for i in range(0, len(calibration), opts.batch)]
    else:
        batches = list(calibration)
    if not batches:
        raise ValueError("int8 calibration needs at least one crop")
    pre = dst.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
    except Exception:  # pre-processing is an optimisation only
        model = onnx.load(str(src))
    _name_nodes(model)
    kept = keep_float_nodes(model, opts.keep_float)
    # A familiarity gate's distances (MatMuls with a 1280x1280 factor) stay in float: 8-bit
    # rounding there would move the cut that decides "unknown".
    kept += [n.name for n in model.graph.node if n.name.startswith(GATE_PREFIX)]
    onnx.save(model, str(pre))
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[opts.calibration]
    cache = {} if calibration_cache is None else {"calibration_cache_path": calibration_cache}
    try:
        quantize_static(
            str(pre),
            str(dst),
            _Reader(input_name, batches),
            quant_format=QuantFormat.QDQ,
            per_channel=opts.per_channel,
            reduce_range=opts.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8 if opts.weight_type == "uint8" else QuantType.QInt8,
            nodes_to_exclude=kept,
            calibrate_method=method,
            extra_options={
                "CalibStridedMinMax": _stride(len(batches)),
                "CalibPercentile": opts.percentile,
            },
            **cache,
        )
    finally:
        pre.unlink(missing_ok=True)
    return Int8Build(dst, tuple(kept))


def calibration_sample(train_x: F32, n: int, seed: int) -> F32:
    """``n`` crops of the training split drawn without replacement (seeded); all of them
    when there are fewer."""
    if n >= len(train_x):
        return train_x
    rng = np.random.default_rng(seed)
    return train_x[np.sort(rng.choice(len(train_x), n, replace=False))]
