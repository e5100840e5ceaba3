"""The segmenters: exact counts against the papers and torchvision, torchvision's weights
converted with equal outputs, and the tools the classifiers support (script, FX, export)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models import segmentation as tv_seg

from mobilenets import create_model
from mobilenets.complexity import profile
from mobilenets.errors import ConfigError
from mobilenets.models import list_models
from mobilenets.models.base import atrous_schedule
from mobilenets.weights.convert import convert_state_dict, torchvision_target

SEGMENTERS = list_models(task="segmentation")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_registry_says_which_task_each_network_does() -> None:
    assert SEGMENTERS == [
        "deeplabv3_mobilenet_v1",
        "deeplabv3_mobilenet_v2",
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v2",
        "lraspp_mobilenet_v3_large",
        "lraspp_mobilenet_v3_small",
    ]
    others = set(list_models(task="classification")) | set(list_models(task="detection"))
    assert set(list_models()) == set(SEGMENTERS) | others


@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs"),
    [
        ("lraspp_mobilenet_v3_large", tv_seg.lraspp_mobilenet_v3_large, {}),
        ("deeplabv3_mobilenet_v3_large", tv_seg.deeplabv3_mobilenet_v3_large, {}),
        ("deeplabv3_mobilenet_v3_large", tv_seg.deeplabv3_mobilenet_v3_large, {"aux_loss": True}),
    ],
)
def test_torchvision_segmenters_convert_with_equal_outputs(ours, theirs, kwargs) -> None:
    """torchvision's model (random init, BN statistics randomised) → ours by name: the same
    parameter count and outputs equal to the last bit, on an input of odd size."""
    torch.manual_seed(0)
    ref = theirs(weights=None, weights_backbone=None, num_classes=5, **kwargs).eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    target = torchvision_target(ours, num_classes=5, aux_loss=bool(kwargs))
    model = convert_state_dict(ref.state_dict(), target)
    assert n_params(model) == n_params(ref)
    x = torch.randn(2, 3, 97, 130)
    with torch.no_grad():
        expected, got = ref(x), model(x)
    assert list(got) == list(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_v2_paper_table_7_parameters() -> None:
    """V2 paper Table 7 (PASCAL VOC, 21 classes): MNet V2* with ASPP 4.52M, without 2.11M;
    MNet V1 with ASPP 11.15M (every tensor, BN included: how those figures round)."""
    assert round(n_params(create_model("deeplabv3_mobilenet_v2")) / 1e6, 2) == 4.52
    assert round(n_params(create_model("deeplabv3_mobilenet_v2", aspp=False)) / 1e6, 2) == 2.11
    assert round(n_params(create_model("deeplabv3_mobilenet_v1")) / 1e6, 2) == 11.15
    assert n_params(create_model("deeplabv3_mobilenet_v2")) == 4_523_541


def test_v3_paper_table_7_parameters_with_deeplabs_reduced_tail() -> None:
    """V3 paper Table 7, LR-ASPP with RF2 and 128 filters, 19 classes: V3 1.51M, V3-Small
    0.47M, reproduced with TF DeepLab's reduced tail (the first block of the last stage halves
    its expansion too); torchvision's tail (the expansion kept) gives 1.75M."""
    large = create_model("lraspp_mobilenet_v3_large", num_classes=19, reduced_tail="deeplab")
    small = create_model("lraspp_mobilenet_v3_small", num_classes=19, reduced_tail="deeplab")
    kept = create_model("lraspp_mobilenet_v3_large", num_classes=19, reduced_tail=True)
    assert n_params(large) == 1_505_550 and round(n_params(large) / 1e6, 2) == 1.51
    assert n_params(small) == 467_486 and round(n_params(small) / 1e6, 2) == 0.47
    assert n_params(kept) == 1_746_878


def test_lraspp_head_mult_adds_at_cityscapes_resolution() -> None:
    """LR-ASPP on V3-Large at 1024×2048, 19 classes: the backbone's count plus Figure 10's
    four convolutions by hand: 1×1 960→128 on the 64×128 map, the gate's 1×1 on the pooled
    1×1 map, and the two classifiers on the 128×256 map."""
    model = create_model("lraspp_mobilenet_v3_large", num_classes=19)
    backbone = create_model("mobilenet_v3_large", dilated=True, features_only=True)
    head = 960 * 128 * 64 * 128 + 960 * 128 + (40 + 128) * 19 * 128 * 256
    assert profile(model, (1024, 2048)).macs == profile(backbone, (1024, 2048)).macs + head


def test_atrous_schedule_follows_deeplab() -> None:
    """Once the output stride is reached, a stride-2 stage keeps the resolution at the current
    rate and the later ones double it (TF DeepLab's rule)."""
    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]  # V1's Table 1
    assert atrous_schedule(strides, 32) == [(s, 1) for s in strides]
    assert atrous_schedule(strides, 16)[-2:] == [(1, 1), (1, 2)]
    assert atrous_schedule(strides, 8)[5:] == [(1, 1)] + [(1, 2)] * 5 + [(1, 2), (1, 4)]
    with pytest.raises(ConfigError, match="output_stride must be 8, 16 or 32"):
        atrous_schedule(strides, 4)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilated_v1_and_v2_keep_the_resolution(output_stride: int) -> None:
    for name in ("mobilenet_v1", "mobilenet_v2"):
        net = create_model(name, output_stride=output_stride, features_only=True)
        maps = net(torch.zeros(1, 3, 64, 96))
        assert maps[-1].shape[-2:] == (64 // output_stride, 96 // output_stride)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_every_segmenter_scripts_and_traces(name: str) -> None:
    """Any size ≥ 32 px in, logits at that size out; TorchScript and FX give the same outputs
    as eager (torch.export: below, and through every runtime in test_deploy)."""
    model = create_model(name, num_classes=3, width_mult=0.5).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        eager = model(x)["out"]
        assert eager.shape == (1, 3, 64, 80)
        scripted = torch.jit.script(model)(x)["out"]
        traced = torch.fx.symbolic_trace(model)(x)["out"]
    for other in (scripted, traced):
        torch.testing.assert_close(other, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("lraspp_mobilenet_v3_small", {"pooling": "paper"}), ("deeplabv3_mobilenet_v3_large", {})],
)
def test_torch_export_of_both_heads(name: str, kwargs: dict) -> None:
    model = create_model(name, num_classes=3, width_mult=0.5, **kwargs).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        eager = model(x)["out"]
        exported = torch.export.export(model, (x,)).module()(x)["out"]
    torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-5)


def test_bad_segmenter_keywords_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="reduced_tail is a MobileNetV3 setting"):
        create_model("lraspp_mobilenet_v2", reduced_tail=True)
    with pytest.raises(ConfigError, match="output stride 16"):
        create_model("deeplabv3_mobilenet_v3_large", output_stride=8)
    with pytest.raises(ConfigError, match="pooling must be one of"):
        create_model("lraspp_mobilenet_v3_small", pooling="max")
    with pytest.raises(ConfigError, match="num_classes must be an integer ≥ 1"):
        create_model("lraspp_mobilenet_v3_small", num_classes=0)
    assert torchvision.__version__  # torchvision is the reference above
