"""Export the classifier to one self-contained ONNX file, simplified with onnxslim."""

from __future__ import annotations

import io
from pathlib import Path

import onnx

from ..torch_compat import ensure_torchvision
from .names import CLASSIFIER_INPUT, CLASSIFIER_OUTPUT

ensure_torchvision()

import torch  # noqa: E402
from torch import nn  # noqa: E402

__all__ = ["OPSET", "export_classifier_onnx", "slim_onnx"]

#: Fixed opset: bundles must load on the oldest onnxruntime we support (1.17 reads 17+).
OPSET = 17


def slim_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding / dead-node removal with onnxslim; keep the original if it fails."""
    try:
        import onnxslim

        slimmed = onnxslim.slim(model)
        if isinstance(slimmed, onnx.ModelProto):
            onnx.checker.check_model(slimmed)
            return slimmed
    except Exception:  # onnxslim is an optimisation, never a reason to fail a release
        pass
    return model


def export_classifier_onnx(
    model: nn.Module, out: Path, img_size: int, *, simplify: bool = True
) -> Path:
    """Write ``out`` (single file, no external data): input ``[N,3,S,S]`` -> logits ``[N,C]``.

    The legacy TorchScript exporter (``dynamo=False``) is used: it writes one protobuf for
    models under 2 GB, while the dynamo exporter writes external data by default.
    """
    model = model.eval()
    dummy = torch.zeros(2, 3, img_size, img_size)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            buf,  # type: ignore[arg-type]  # accepts file objects too
            dynamo=False,
            opset_version=OPSET,
            input_names=[CLASSIFIER_INPUT],
            output_names=[CLASSIFIER_OUTPUT],
            dynamic_axes={CLASSIFIER_INPUT: {0: "N"}, CLASSIFIER_OUTPUT: {0: "N"}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    if simplify:
        proto = slim_onnx(proto)
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(proto.SerializeToString())
    return out
