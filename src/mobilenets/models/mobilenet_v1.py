"""MobileNetV1 (Howard et al. 2017, arXiv 1704.04861), its Conv baseline and shallow variant.

Table 1 of the paper, one row per depthwise separable layer: the depthwise 3×3 conv has stride
``s``; the pointwise 1×1 conv that follows outputs ``c`` channels. The width multiplier α scales
every ``c`` (Section 3.3); the resolution multiplier ρ is simply the input size (any ≥ 32 px).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from torch import nn

from mobilenets.errors import ConfigError
from mobilenets.layers import ConvNormAct, DepthwiseSeparable, check_padding, make_divisible
from mobilenets.models.base import MobileNet, atrous_schedule, check_width_mult
from mobilenets.models.registry import register_model
from mobilenets.models.table import check_table, refuse_with_table


class V1Row(NamedTuple):
    s: int  # stride of the depthwise 3×3 conv
    c: int  # output channels of the pointwise 1×1 conv


V1_STEM_CHANNELS = 32  # "Conv / s2 | 3×3×3×32 | 224×224×3"

V1_TABLE_1 = [
    # s, c
    V1Row(1, 64),
    V1Row(2, 128),
    V1Row(1, 128),
    V1Row(2, 256),
    V1Row(1, 256),
    V1Row(2, 512),
    V1Row(1, 512),  # 5× "Conv dw / s1, Conv / s1" at 14×14×512 (rows 7–11:
    V1Row(1, 512),  # the layers Table 5's shallow network removes)
    V1Row(1, 512),
    V1Row(1, 512),
    V1Row(1, 512),
    V1Row(2, 1024),
    V1Row(1, 1024),  # printed "s2" in Table 1, but its input is already 7×7: only s1 gives 569 M
]
SHALLOW_ROWS = range(6, 11)  # Table 5: "the five layers of separable filters with 14×14×512"

#: How α scales a layer's ``c`` (the paper only says αM): timm rounds to a multiple of 8,
#: Keras applications truncate. They agree for Keras's α ∈ {0.25, 0.5, 0.75, 1}.
V1_CHANNEL_RULES = {
    "timm": lambda c, alpha: make_divisible(c * alpha),
    "keras": lambda c, alpha: int(c * alpha),
}


def v1_table(width_mult: float = 1.0, channel_rules: str = "timm", shallow: bool = False) -> dict:
    """Table 1 (less Table 5's five layers when ``shallow``) with α applied: every layer's
    channels written out (see :mod:`mobilenets.models.table`)."""
    width_mult = check_width_mult(width_mult)
    if channel_rules not in V1_CHANNEL_RULES:
        raise ConfigError(
            f"channel_rules must be one of {tuple(V1_CHANNEL_RULES)}, got {channel_rules!r}"
        )
    channels = V1_CHANNEL_RULES[channel_rules]
    rows = [r for i, r in enumerate(V1_TABLE_1) if not (shallow and i in SHALLOW_ROWS)]
    return {
        "stem": channels(V1_STEM_CHANNELS, width_mult),
        "rows": [{"s": row.s, "c": channels(row.c, width_mult)} for row in rows],
    }


class MobileNetV1(MobileNet):
    """MobileNetV1: a full 3×3 conv, 13 depthwise separable layers, average pool, FC.

    Args:
        width_mult: α, scales every layer's channels (Table 6: 1.0, 0.75, 0.5, 0.25).
        num_classes: classifier outputs (0: no classifier).
        in_chans: input image channels.
        dropout: dropout before the classifier.
        full_conv: replace every depthwise + pointwise pair by one full 3×3 conv (Table 4's
            "Conv MobileNet" baseline).
        shallow: drop the five 14×14×512 separable layers (Table 5's "Shallow MobileNet").
        act: ``"relu"`` as in the paper; ``"relu6"`` matches timm's ``mobilenetv1_*``.
        channel_rules: ``"timm"`` (c·α rounded to a multiple of 8) or ``"keras"`` (int(c·α)).
        padding: ``"symmetric"``; ``"tf_same"`` (TensorFlow's "same" on the stride-2 convs); or
            ``"keras"``: Keras applications' MobileNet, "same" on the stem and a fixed
            ``(0, 1), (0, 1)`` before each stride-2 depthwise conv, whatever the input size.
        bn_eps: BatchNorm epsilon.
        norm_layer: replaces BatchNorm (a callable of the channel count, torchvision's keyword).
        output_stride: 32, or 16 or 8 with atrous convolution in the later layers (the
            DeepLabv3 backbone of the V2 paper's Table 7, "MNet V1").
        features_only: return multi-scale feature maps (see ``feature_info``).
        out_indices: which feature maps ``features_only`` returns.
        table: every layer's channels (:func:`v1_table`'s form) instead of α's; kept as
            ``model.table`` either way.
    """

    def __init__(
        self,
        *,
        table: dict | None = None,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.2,
        full_conv: bool = False,
        shallow: bool = False,
        act: str = "relu",
        channel_rules: str = "timm",
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
        norm_layer: Callable[[int], nn.Module] | None = None,
        output_stride: int = 32,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        refuse_with_table(
            table,
            width_mult=(width_mult, 1.0),
            channel_rules=(channel_rules, "timm"),
            shallow=(shallow, False),
        )
        table = (
            check_table(table, "v1")
            if table is not None
            else v1_table(width_mult, channel_rules, shallow)
        )
        check_padding(padding, ("symmetric", "tf_same", "keras"))
        stem_padding = "tf_same" if padding == "keras" else padding
        block_padding = "tf_same_fixed" if padding == "keras" else padding
        stem_channels = table["stem"]
        norm = {"bn_eps": bn_eps, "norm_layer": norm_layer}
        stem = ConvNormAct(in_chans, stem_channels, 3, 2, act=act, padding=stem_padding, **norm)
        blocks = []
        in_channels = stem_channels
        schedule = atrous_schedule([row["s"] for row in table["rows"]], output_stride)
        for row, (stride, dilation) in zip(table["rows"], schedule, strict=True):
            out_channels = row["c"]
            layer = {"act": act, "padding": block_padding, "dilation": dilation, **norm}
            if full_conv:
                block = ConvNormAct(in_channels, out_channels, 3, stride, **layer)
            else:
                block = DepthwiseSeparable(in_channels, out_channels, stride, **layer)
            blocks.append((block, stride, out_channels))
            in_channels = out_channels
        super().__init__(
            stem=stem,
            stem_channels=stem_channels,
            blocks=blocks,
            head=None,
            num_features=in_channels,
            pre_logits=None,
            classifier_in=in_channels,
            num_classes=num_classes,
            in_chans=in_chans,
            dropout=dropout,
            features_only=features_only,
            out_indices=out_indices,
        )
        self.table = table


register_model("mobilenet_v1", MobileNetV1, paper="MobileNetV1, Table 1")
register_model(
    "mobilenet_v1_conv",
    MobileNetV1,
    paper="MobileNetV1, Table 4 (Conv MobileNet)",
    preset={"full_conv": True},
)
register_model(
    "mobilenet_v1_shallow",
    MobileNetV1,
    paper="MobileNetV1, Table 5 (Shallow MobileNet)",
    preset={"shallow": True},
)
