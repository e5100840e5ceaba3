"""TensorFlow's "same" padding (``padding="tf_same"``, V1's ``"keras"``): the padding itself,
and that padded networks keep the model contract (scripting, FX, torch.export, BN folding)."""

from __future__ import annotations

import pytest
import torch

from mobilenets.errors import ConfigError
from mobilenets.export.folding import fold_bn
from mobilenets.layers import Conv2dSame, ConvNormAct, same_padding
from mobilenets.models import create_model


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 3, 2, [0, 1]),  # even: the odd pixel goes after
        (225, 3, 2, [1, 1]),  # odd: symmetric
        (224, 5, 2, [1, 2]),
        (225, 5, 2, [2, 2]),
        (7, 3, 2, [1, 1]),
        (224, 3, 1, [1, 1]),  # stride 1: "same" is symmetric
        (33, 3, 2, [1, 1]),
    ],
)
def test_same_padding_is_tensorflows(size, kernel, stride, expected) -> None:
    assert same_padding(size, kernel, stride, 1) == expected
    out = (size + sum(expected) - kernel) // stride + 1
    assert out == -(-size // stride)  # TF "same": ceil(size / stride) outputs


def test_tf_same_conv_is_a_symmetric_conv_on_the_tf_padded_input() -> None:
    torch.manual_seed(0)
    block = ConvNormAct(8, 8, 5, stride=2, groups=8, padding="tf_same").eval()
    assert isinstance(block.conv, Conv2dSame)
    reference = torch.nn.Conv2d(8, 8, 5, stride=2, groups=8, bias=False)
    reference.weight.data.copy_(block.conv.weight)
    for size in (16, 17):
        x = torch.randn(1, 8, size, size)
        before, after = same_padding(size, 5, 2, 1)
        padded = torch.nn.functional.pad(x, [before, after, before, after])
        torch.testing.assert_close(block.conv(x), reference(padded))
    fixed = ConvNormAct(4, 4, 3, stride=2, groups=4, padding="tf_same_fixed").eval()
    x = torch.randn(1, 4, 17, 17)
    reference = torch.nn.Conv2d(4, 4, 3, stride=2, groups=4, bias=False)
    reference.weight.data.copy_(fixed.conv.weight)
    torch.testing.assert_close(fixed.conv(x), reference(torch.nn.functional.pad(x, [0, 1, 0, 1])))


PADDED = [
    ("mobilenet_v1", "keras"),
    ("mobilenet_v2", "tf_same"),
    ("mobilenet_v3_small", "tf_same"),
]


def randomise_bn(model: torch.nn.Module) -> torch.nn.Module:
    """BN statistics and affine terms drawn at random: signals of a freshly initialised deep
    network fade to ~1e-9, where any padding would look equal."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.2, generator=generator)
    return model.eval()


@pytest.mark.parametrize(("name", "padding"), PADDED)
def test_padded_networks_script_trace_export_and_fold(name, padding) -> None:
    model = randomise_bn(create_model(name, width_mult=0.5, num_classes=10, padding=padding))
    symmetric = create_model(name, width_mult=0.5, num_classes=10).eval()
    symmetric.load_state_dict(model.state_dict())  # same tensors, same names
    for size in (64, 65):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            expected = model(x)
            if size % 2 == 0:  # the stem pads (0, 1) here, not (1, 1): the padding matters
                assert not torch.allclose(model.stem(x), symmetric.stem(x), atol=1e-2)
            torch.testing.assert_close(torch.jit.script(model)(x), expected)
            torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), expected)
            torch.testing.assert_close(fold_bn(model)(x), expected, atol=1e-4, rtol=1e-4)
    # torch.export: a dynamic batch at a fixed size (TF's padding follows the size's parity,
    # which torch.export's symbolic shapes cannot carry through five stride-2 stages)
    batch = torch.export.Dim("batch", min=1, max=8)
    for size in (64, 65):
        exported = torch.export.export(
            model, (torch.randn(2, 3, size, size),), dynamic_shapes=({0: batch},)
        )
        x = torch.randn(3, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(x), model(x))


def test_a_padding_a_family_does_not_have_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"padding must be one of \('symmetric', 'tf_same'\)"):
        create_model("mobilenet_v2", padding="keras")
    with pytest.raises(ConfigError, match="padding must be one of"):
        create_model("mobilenet_v1", padding="same")
