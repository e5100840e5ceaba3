"""Building blocks shared by every MobileNet (V1, V2, V3).

Each block keeps its parts as separately named children (``conv``, ``bn``, ``act``;
``expand``, ``depthwise``, ``se``, ``project``) so that BN folding, quantization fusion and the
per-layer complexity counter see every part.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from mobilenets.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "PADDINGS",
    "Conv2dSame",
    "ConvNormAct",
    "DepthwiseSeparable",
    "InvertedResidual",
    "SqueezeExcite",
    "init_weights",
    "make_activation",
    "make_divisible",
    "pad_same",
]

#: Activation names used in the model tables ("RE" and "HS" are the V3 paper's column values).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True),
    "RE": lambda: nn.ReLU(inplace=True),
    "HS": lambda: nn.Hardswish(inplace=True),
}


def make_activation(name: str | None) -> nn.Module:
    """Return a fresh activation module for ``name`` (``None`` gives ``nn.Identity``)."""
    if name is None:
        return nn.Identity()
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown activation {name!r}; allowed: {sorted(ACTIVATIONS)} or None"
        ) from None


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below 90% of it.

    This is the channel rounding of the TF reference implementations of MobileNet V2/V3
    (``_make_divisible``), used by torchvision and timm alike.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


#: How a conv pads its input (``ConvNormAct(padding=...)``; the models' ``padding`` keyword).
PADDINGS = {
    "symmetric": "(k - 1) // 2 · d on every side, as in torchvision and timm (the default)",
    "tf_same": "TensorFlow's 'same': for stride 2 the total from the input size at run time, "
    "the odd pixel at the bottom/right (Keras applications, timm's tf_* ports)",
    "tf_same_fixed": "what TensorFlow's 'same' pads for an input divisible by the stride, at "
    "every size (Keras MobileNet V1's ZeroPadding2D((0, 1), (0, 1)) before stride-2 convs)",
}


def same_padding(size: int, kernel_size: int, stride: int, dilation: int) -> list[int]:
    """TensorFlow's "same" padding of one side of length ``size``: ``[before, after]``, the
    total making ``ceil(size / stride)`` outputs, the odd pixel after."""
    span = (kernel_size - 1) * dilation + 1
    total = ((size + stride - 1) // stride - 1) * stride + span - size
    if span < stride:  # only then can the total be negative (a branch on the kernel, not on
        total = max(total, 0)  # the size: torch.export keeps the size symbolic)
    return [total // 2, total - total // 2]


def pad_same(
    x: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int],
    fixed: bool = False,
) -> torch.Tensor:
    """Zero-pad ``x`` (N, C, H, W) as TensorFlow's "same" conv would (``fixed``: as for an input
    divisible by the stride, whatever its size)."""
    height = stride[0] if fixed else x.shape[-2]
    width = stride[1] if fixed else x.shape[-1]
    top_bottom = same_padding(height, kernel_size[0], stride[0], dilation[0])
    left_right = same_padding(width, kernel_size[1], stride[1], dilation[1])
    return F.pad(x, [left_right[0], left_right[1], top_bottom[0], top_bottom[1]])


torch.fx.wrap("pad_same")  # one node in an FX graph: its arithmetic reads the input's size


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "same" padding (:data:`PADDINGS`), applied in
    ``forward`` so that it follows the input size; its weights and their names are Conv2d's."""

    def __init__(self, *args: object, fixed: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, padding=0)
        self.fixed = fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel_size = [self.kernel_size[0], self.kernel_size[1]]
        stride = [self.stride[0], self.stride[1]]
        dilation = [self.dilation[0], self.dilation[1]]
        x = pad_same(x, kernel_size, stride, dilation, self.fixed)
        return self._conv_forward(x, self.weight, self.bias)


def check_padding(padding: str, allowed: tuple[str, ...] = ("symmetric", "tf_same")) -> str:
    """``padding`` if it is one of ``allowed``, else a clear error."""
    if padding not in allowed:
        raise ConfigError(f"padding must be one of {allowed}, got {padding!r}")
    return padding


class ConvNormAct(nn.Module):
    """Conv2d → BatchNorm2d → activation, as three named children ``conv``, ``bn``, ``act``.

    Padding is ``(kernel_size - 1) // 2 · dilation`` ("same" for stride 1), as in all three
    papers' PyTorch ports; ``padding="tf_same"`` or ``"tf_same_fixed"`` pads a strided conv as
    TensorFlow does (:data:`PADDINGS`). ``act=None`` gives a linear layer (V2's linear
    bottleneck).
    ``norm_layer`` (torchvision's keyword: a callable of the channel count) replaces BatchNorm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
        bn_eps: float = 1e-5,
        norm_layer: Callable[[int], nn.Module] | None = None,
        dilation: int = 1,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        check_padding(padding, tuple(PADDINGS))
        conv_args = {"stride": stride, "dilation": dilation, "groups": groups, "bias": False}
        if padding == "symmetric" or stride == 1:  # TF's "same" is symmetric at stride 1
            self.conv = nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=(kernel_size - 1) // 2 * dilation,
                **conv_args,
            )
        else:
            fixed = padding == "tf_same_fixed"
            self.conv = Conv2dSame(in_channels, out_channels, kernel_size, fixed=fixed, **conv_args)
        self.bn = norm_layer(out_channels) if norm_layer else nn.BatchNorm2d(out_channels, bn_eps)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with a hard-sigmoid gate (MobileNetV3 paper, Section 5.3, Fig. 4).

    ``squeeze_channels`` defaults to ``make_divisible(channels / 4, 8)``. The two FC layers are
    1×1 convolutions with bias, as in torchvision and timm.
    """

    def __init__(self, channels: int, squeeze_channels: int | None = None) -> None:
        super().__init__()
        squeeze_channels = squeeze_channels or make_divisible(channels / 4, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))
        return x * scale


class DepthwiseSeparable(nn.Module):
    """Depthwise 3×3 conv → BN → act, then pointwise 1×1 conv → BN → act (V1 paper, Fig. 3)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_size: int = 3,
        act: str = "relu",
        bn_eps: float = 1e-5,
        norm_layer: Callable[[int], nn.Module] | None = None,
        padding: str = "symmetric",
        dilation: int = 1,
    ) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "norm_layer": norm_layer}
        self.depthwise = ConvNormAct(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            act=act,
            padding=padding,
            dilation=dilation,
            **norm,
        )
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, act=act, **norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class InvertedResidual(nn.Module):
    """Inverted residual with a linear bottleneck (V2 paper, Table 1; V3 paper, Fig. 4).

    1×1 expansion (omitted when ``hidden_channels == in_channels``, the t = 1 rows) → k×k
    depthwise → optional squeeze-excite → linear 1×1 projection. The residual connection is used
    only when ``stride == 1`` and ``in_channels == out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: str = "relu6",
        use_se: bool = False,
        bn_eps: float = 1e-5,
        norm_layer: Callable[[int], nn.Module] | None = None,
        dilation: int = 1,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"stride must be 1 or 2, got {stride}")
        stride = 1 if dilation > 1 else stride  # a dilated block keeps the resolution
        self.use_residual = stride == 1 and in_channels == out_channels
        norm = {"bn_eps": bn_eps, "norm_layer": norm_layer}
        self.expand = (
            ConvNormAct(in_channels, hidden_channels, 1, act=act, **norm)
            if hidden_channels != in_channels
            else nn.Identity()
        )
        self.depthwise = ConvNormAct(
            hidden_channels,
            hidden_channels,
            kernel_size,
            stride,
            groups=hidden_channels,
            act=act,
            dilation=dilation,
            padding=padding,
            **norm,
        )
        self.se = SqueezeExcite(hidden_channels) if use_se else nn.Identity()
        self.project = ConvNormAct(hidden_channels, out_channels, 1, act=None, **norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.use_residual else out


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet init: conv kaiming-normal fan_out, BN (1, 0), Linear N(0, 0.01)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
