"""MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381): inverted residuals, linear bottlenecks.

Table 2 of the paper: each row is a sequence of ``n`` identical bottlenecks with expansion factor
``t`` and ``c`` output channels; the first of them has stride ``s``, the rest stride 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from torch import nn

from mobilenets.layers import ConvNormAct, InvertedResidual, check_padding, make_divisible
from mobilenets.models.base import MobileNet, atrous_schedule, check_width_mult
from mobilenets.models.registry import register_model
from mobilenets.models.table import check_table, refuse_with_table


class V2Row(NamedTuple):
    t: int  # expansion factor
    c: int  # output channels
    n: int  # repeats
    s: int  # stride of the first repeat


V2_STEM_CHANNELS = 32  # "conv2d | - | 32 | 1 | 2" at 224²×3
V2_LAST_CHANNELS = 1280  # "conv2d 1×1 | - | 1280 | 1 | 1" at 7²×320

V2_TABLE_2 = [
    # t, c, n, s
    V2Row(1, 16, 1, 1),  # t = 1: no expansion conv (adding one gives ~313 M mult-adds)
    V2Row(6, 24, 2, 2),
    V2Row(6, 32, 3, 2),
    V2Row(6, 64, 4, 2),
    V2Row(6, 96, 3, 1),
    V2Row(6, 160, 3, 2),
    V2Row(6, 320, 1, 1),
]


def v2_table(width_mult: float = 1.0) -> dict:
    """Table 2 unrolled, one row per bottleneck, with α applied: ``exp`` = t × the block's input
    channels, ``out`` its output channels (see :mod:`mobilenets.models.table`)."""
    width_mult = check_width_mult(width_mult)
    stem = make_divisible(V2_STEM_CHANNELS * width_mult)
    rows, in_channels = [], stem
    for t, c, n, s in V2_TABLE_2:
        out_channels = make_divisible(c * width_mult)
        for i in range(n):
            rows.append({"exp": in_channels * t, "out": out_channels, "s": s if i == 0 else 1})
            in_channels = out_channels
    last = make_divisible(V2_LAST_CHANNELS * max(1.0, width_mult))
    return {"stem": stem, "rows": rows, "last": last}


# --- the pieces a V2 network is assembled from (NetAdapt's latency table builds the same) ----


def stem(table: dict, in_chans: int = 3, **norm: object) -> nn.Module:
    """The 3×3 stride-2 conv (Table 2's first row)."""
    return ConvNormAct(in_chans, table["stem"], 3, stride=2, act="relu6", **norm)


def block(
    row: dict, in_channels: int, stride: int | None = None, dilation: int = 1, **norm: object
) -> nn.Module:
    """One bottleneck of a table row: 1×1 expansion, 3×3 depthwise, linear 1×1 projection
    (``stride`` and ``dilation`` other than the row's for an atrous backbone)."""
    stride = row["s"] if stride is None else stride
    return InvertedResidual(
        in_channels, row["exp"], row["out"], 3, stride, "relu6", **norm, dilation=dilation
    )


def head(table: dict, in_channels: int, **norm: object) -> tuple[nn.Module, None, int]:
    """The last 1×1 conv (1280), no pre-logits layer, and the classifier's input width."""
    return ConvNormAct(in_channels, table["last"], 1, act="relu6", **norm), None, table["last"]


class MobileNetV2(MobileNet):
    """MobileNetV2: 3×3 stem, 17 inverted residual bottlenecks, 1×1 conv to 1280, pool, FC.

    Args:
        width_mult: α (the paper's 0.35–1.4); channels are rounded to multiples of 8.
        num_classes: classifier outputs (0: no classifier).
        in_chans: input image channels.
        dropout: dropout before the classifier.
        padding: ``"symmetric"`` or ``"tf_same"`` (TensorFlow's "same" on the stride-2 convs,
            as in Keras applications' MobileNetV2).
        bn_eps: BatchNorm epsilon (1e-3 in the TF reference and Keras).
        norm_layer: replaces BatchNorm (a callable of the channel count, torchvision's keyword).
        output_stride: 32, or 16 or 8 with atrous convolution in the later blocks (the
            DeepLabv3 backbone of Section 6.3; :func:`~mobilenets.models.base.atrous_schedule`).
        features_only: return multi-scale feature maps (see ``feature_info``).
        out_indices: which feature maps ``features_only`` returns.
        table: every block's channels (:func:`v2_table`'s form) instead of α's; kept as
            ``model.table`` either way.

    The last conv is 1280·max(1, α): "for multipliers less than one, we apply width multiplier
    to all layers except the very last convolutional layer" (Section 6.1).
    """

    def __init__(
        self,
        *,
        table: dict | None = None,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.2,
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
        norm_layer: Callable[[int], nn.Module] | None = None,
        output_stride: int = 32,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        refuse_with_table(table, width_mult=(width_mult, 1.0))
        table = check_table(table, "v2") if table is not None else v2_table(width_mult)
        norm = {"bn_eps": bn_eps, "norm_layer": norm_layer, "padding": check_padding(padding)}
        blocks = []
        in_channels = table["stem"]
        schedule = atrous_schedule([row["s"] for row in table["rows"]], output_stride)
        for row, (stride, dilation) in zip(table["rows"], schedule, strict=True):
            blocks.append((block(row, in_channels, stride, dilation, **norm), stride, row["out"]))
            in_channels = row["out"]
        last_conv, _, last_channels = head(table, in_channels, **norm)
        super().__init__(
            stem=stem(table, in_chans, **norm),
            stem_channels=table["stem"],
            blocks=blocks,
            head=last_conv,
            num_features=last_channels,
            pre_logits=None,
            classifier_in=last_channels,
            num_classes=num_classes,
            in_chans=in_chans,
            dropout=dropout,
            features_only=features_only,
            out_indices=out_indices,
        )
        self.table = table


register_model("mobilenet_v2", MobileNetV2, paper="MobileNetV2, Table 2")
