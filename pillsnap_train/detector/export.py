"""Export a trained detector to the ONNX contract the SDK runs.

Contract: one self-contained ``.onnx`` file (no external data), static input ``images``
``[1, 3, imgsz, imgsz]`` float RGB in [0, 1] (letterboxed by the SDK), one output
``[1, 4 + nc, anchors]``: the raw Ultralytics head, ``cx, cy, w, h`` in input pixels then
per-class sigmoid scores. NMS is *not* embedded: the SDK runs its own, with thresholds
calibrated per release, and a plain graph quantises and runs on every execution provider.

Ultralytics' own exporter is used (it knows how to put the head in export mode), with the
network shut off by :func:`~pillsnap_train.detector.train.prepare_ultralytics_offline` so its
requirement checks cannot pip-install anything. It writes next to the weights, so it works
on a private copy of them in a temporary directory.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..export.names import DETECTOR_INPUT

__all__ = ["DetectorOnnxMeta", "detector_onnx_metadata", "export_detector_onnx"]


@dataclass(frozen=True)
class DetectorOnnxMeta:
    """Input/output facts of an exported detector, read from the ONNX graph itself."""

    input_name: str
    input_shape: tuple[int | str, ...]
    output_name: str
    output_shape: tuple[int | str, ...]
    num_classes: int | None
    opset: int
    metadata: dict[str, str] = field(default_factory=dict)


def _dims(value_info: object) -> tuple[int | str, ...]:
    shape = value_info.type.tensor_type.shape  # type: ignore[attr-defined]
    dims: list[int | str] = []
    for d in shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else str(d.dim_param or "?"))
    return tuple(dims)


def detector_onnx_metadata(path: str | os.PathLike[str]) -> DetectorOnnxMeta:
    """Read the input/output names and shapes (and metadata props) from an ONNX file.

    ``num_classes`` is ``output_shape[1] - 4`` when that dimension is static.
    """
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or not model.graph.output:
        raise ValueError(
            f"{path}: expected one input and at least one output, got "
            f"{[i.name for i in inputs]} -> {[o.name for o in model.graph.output]}"
        )
    out = model.graph.output[0]
    out_shape = _dims(out)
    nc = out_shape[1] - 4 if len(out_shape) == 3 and isinstance(out_shape[1], int) else None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return DetectorOnnxMeta(
        input_name=inputs[0].name,
        input_shape=_dims(inputs[0]),
        output_name=out.name,
        output_shape=out_shape,
        num_classes=nc,
        opset=int(opset),
        metadata={p.key: p.value for p in model.metadata_props},
    )


def _uses_external_data(path: Path) -> bool:
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(os.fspath(path), load_external_data=False)
    return any(uses_external_data(t) for t in model.graph.initializer)


def export_detector_onnx(
    weights_pt: str | os.PathLike[str],
    out_onnx: str | os.PathLike[str],
    *,
    imgsz: int = 640,
    opset: int = 17,
    simplify: bool = True,
) -> Path:
    """Export Ultralytics ``weights_pt`` to ``out_onnx`` (see the module contract); returns it.

    Raises ``RuntimeError`` if the result breaks the contract (shape, names, external data),
    so a bad export never reaches a release bundle.
    """
    from pillsnap_train.detector.train import prepare_ultralytics_offline

    prepare_ultralytics_offline()
    yolo_cls = importlib.import_module("ultralytics").YOLO

    dst = Path(out_onnx).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pillsnap-detexport-") as tmp:
        work = Path(tmp) / "model.pt"
        shutil.copyfile(weights_pt, work)
        produced = yolo_cls(str(work)).export(
            format="onnx",
            imgsz=imgsz,
            opset=opset,
            simplify=simplify,
            dynamic=False,
            nms=False,
            half=False,
            int8=False,
            batch=1,
            device="cpu",
        )
        src = Path(str(produced)) if produced else work.with_suffix(".onnx")
        if not src.is_file():
            raise RuntimeError(f"Ultralytics export produced no ONNX file ({produced!r})")
        if _uses_external_data(src):
            raise RuntimeError("exported ONNX uses external data; the contract needs one file")
        tmp_dst = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp_dst)
        os.replace(tmp_dst, dst)

    meta = detector_onnx_metadata(dst)
    problems = []
    if meta.input_name != DETECTOR_INPUT or meta.input_shape != (1, 3, imgsz, imgsz):
        problems.append(f"input {meta.input_name}{list(meta.input_shape)}")
    if (
        len(meta.output_shape) != 3
        or meta.output_shape[0] != 1
        or not all(isinstance(d, int) and d > 0 for d in meta.output_shape)
        or meta.num_classes is None
        or meta.num_classes < 1
    ):
        problems.append(f"output {meta.output_name}{list(meta.output_shape)}")
    if problems:
        raise RuntimeError(f"{dst}: exported detector breaks the contract: {problems}")
    return dst
