import pytest
import torch
from torch import nn

from mobilenets.layers import (
    ConvNormAct,
    DepthwiseSeparable,
    InvertedResidual,
    SqueezeExcite,
    make_activation,
    make_divisible,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(32 * 0.75, 24), (16 * 0.5, 8), (18, 24), (12, 16), (54, 56), (3.2, 8), (1280 * 1.4, 1792)],
)
def test_make_divisible_rounds_to_8_never_below_90_percent(value: float, expected: int) -> None:
    assert make_divisible(value) == expected


def test_conv_norm_act_has_three_named_children() -> None:
    block = ConvNormAct(3, 16, 3, stride=2, act="hswish")
    assert [name for name, _ in block.named_children()] == ["conv", "bn", "act"]
    assert block.conv.bias is None and block.conv.padding == (1, 1)
    assert isinstance(block.act, nn.Hardswish)
    assert block(torch.randn(2, 3, 32, 32)).shape == (2, 16, 16, 16)


def test_depthwise_separable_is_depthwise_then_pointwise() -> None:
    block = DepthwiseSeparable(32, 64, stride=2)
    assert block.depthwise.conv.groups == 32 and block.depthwise.conv.kernel_size == (3, 3)
    assert block.pointwise.conv.kernel_size == (1, 1)
    assert block(torch.randn(1, 32, 16, 16)).shape == (1, 64, 8, 8)


def test_inverted_residual_without_expansion_when_t_is_1() -> None:
    block = InvertedResidual(16, 16, 16, stride=1)
    assert isinstance(block.expand, nn.Identity)
    assert block.use_residual
    assert isinstance(block.project.act, nn.Identity)  # linear bottleneck


def test_inverted_residual_residual_only_for_stride_1_and_equal_channels() -> None:
    assert not InvertedResidual(16, 96, 24, stride=1).use_residual
    assert not InvertedResidual(24, 144, 24, stride=2).use_residual
    block = InvertedResidual(24, 144, 24, stride=1).eval()
    x = torch.randn(1, 24, 8, 8)
    inner = block.project(block.se(block.depthwise(block.expand(x))))
    torch.testing.assert_close(block(x), x + inner)


def test_squeeze_excite_uses_a_quarter_rounded_to_8_and_hard_sigmoid() -> None:
    se = SqueezeExcite(120)
    assert se.fc1.out_channels == 32  # make_divisible(30, 8)
    assert isinstance(se.gate, nn.Hardsigmoid)
    x = torch.randn(2, 120, 4, 4)
    gate = torch.nn.functional.hardsigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3), True)))))
    torch.testing.assert_close(se(x), x * gate)


def test_unknown_activation_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*relu6"):
        make_activation("gelu")
