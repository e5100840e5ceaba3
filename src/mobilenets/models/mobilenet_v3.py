"""MobileNetV3 Large and Small (Howard et al. 2019, arXiv 1905.02244, later version).

Tables 1 and 2 of the paper, one row per bneck: kernel ``k``, absolute expansion size ``exp``,
output channels ``out``, squeeze-excite ``se``, nonlinearity ``nl`` ("RE" ReLU, "HS" h-swish) and
stride ``s``. Both tables open with a 3×3 stride-2 conv (16, HS); the rows are followed by a 1×1
conv with BN (960 / 576, HS), average pooling and a 1×1 conv without BN (1280 / 1024, HS).

Where the sources round channels differently for α ≠ 1, ``channel_rules`` names the source:

- ``"paper"`` (the TF reference the paper's Table 3 was measured with): expansion sizes scale
  with the already-scaled input (``exp/in`` kept), the 1280/1024 head is not shrunk for α < 1.
- ``"timm"``: as ``"paper"``, and the 16-channel stem is kept for α < 0.75 (timm ``fix_stem``).
- ``"torchvision"``: every channel, expansion and the head included, is scaled by α.
- ``"keras"`` (Keras applications): as ``"paper"``, but the stem keeps 16 channels at every α
  and the last 1×1 conv is 6 × the last block's channels (equal to ``"paper"`` for α ≥ 0.75).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from mobilenets.errors import ConfigError
from mobilenets.layers import (
    ConvNormAct,
    InvertedResidual,
    check_padding,
    make_activation,
    make_divisible,
)
from mobilenets.models.base import MobileNet, check_width_mult
from mobilenets.models.registry import register_model
from mobilenets.models.table import check_table, refuse_with_table


@dataclass(frozen=True)
class ChannelRules:
    """How one source applies α to each part of V3 (see the module docstring)."""

    expansion: str  # "ratio": the table's exp/in on the scaled input; "scaled": exp·α
    fixed_stem_below: float  # α under which the stem keeps its 16 channels (0: never)
    last_conv: str  # "scaled": 960·α / 576·α; "six_times": 6 × the last block's channels
    head: str  # "at_least_table": max(1, α)·1280; "fixed": 1280; "scaled": 1280·α


CHANNEL_RULES = {
    "paper": ChannelRules("ratio", 0.0, "scaled", "at_least_table"),
    "timm": ChannelRules("ratio", 0.75, "scaled", "fixed"),
    "torchvision": ChannelRules("scaled", 0.0, "six_times", "scaled"),
    "keras": ChannelRules("ratio", math.inf, "six_times", "at_least_table"),
}


class V3Row(NamedTuple):
    k: int  # depthwise kernel size
    exp: int  # expansion size (absolute, as printed)
    out: int  # output channels
    se: bool  # squeeze-and-excite
    nl: str  # "RE" or "HS"
    s: int  # stride


V3_STEM_CHANNELS = 16

V3_LARGE_TABLE_1 = [
    # k, exp, out, SE, NL, s
    V3Row(3, 16, 16, False, "RE", 1),
    V3Row(3, 64, 24, False, "RE", 2),
    V3Row(3, 72, 24, False, "RE", 1),
    V3Row(5, 72, 40, True, "RE", 2),
    V3Row(5, 120, 40, True, "RE", 1),
    V3Row(5, 120, 40, True, "RE", 1),
    V3Row(3, 240, 80, False, "HS", 2),
    V3Row(3, 200, 80, False, "HS", 1),
    V3Row(3, 184, 80, False, "HS", 1),
    V3Row(3, 184, 80, False, "HS", 1),
    V3Row(3, 480, 112, True, "HS", 1),
    V3Row(3, 672, 112, True, "HS", 1),
    V3Row(5, 672, 160, True, "HS", 2),
    V3Row(5, 960, 160, True, "HS", 1),
    V3Row(5, 960, 160, True, "HS", 1),
]
V3_LARGE_LAST = (960, 1280)  # "conv2d, 1×1 | 960 | HS"; "conv2d 1×1, NBN | 1280 | HS"

V3_SMALL_TABLE_2 = [
    # k, exp, out, SE, NL, s
    V3Row(3, 16, 16, True, "RE", 2),
    V3Row(3, 72, 24, False, "RE", 2),
    V3Row(3, 88, 24, False, "RE", 1),
    V3Row(5, 96, 40, True, "HS", 2),
    V3Row(5, 240, 40, True, "HS", 1),
    V3Row(5, 240, 40, True, "HS", 1),
    V3Row(5, 120, 48, True, "HS", 1),
    V3Row(5, 144, 48, True, "HS", 1),
    V3Row(5, 288, 96, True, "HS", 2),
    V3Row(5, 576, 96, True, "HS", 1),
    V3Row(5, 576, 96, True, "HS", 1),
]
V3_SMALL_LAST = (576, 1024)  # the later arXiv version; the first one ended in 1280


#: ``reduced_tail``'s settings: "detection" (``True``) halves the last stage's outputs and the
#: head, the first block keeping its expansion (TF-slim's ``V3_LARGE_DETECTION``, torchvision);
#: "deeplab" also halves that expansion (672 → 336 for Large), as TF DeepLab's
#: ``mobilenet_v3_large_seg`` does: the backbone of the paper's Table 7 ("RF2").
REDUCED_TAILS = (False, True, "detection", "deeplab")


def _reduce_tail(
    rows: list[V3Row], last: tuple[int, int], mode: bool | str = True
) -> tuple[list[V3Row], tuple[int, int]]:
    """Halve the channels of the last (stride-32) stage and the head (Sections 6.3–6.4)."""
    start = max(i for i, row in enumerate(rows) if row.s == 2)
    keep_first = mode != "deeplab"
    tail = [
        row._replace(exp=row.exp if i == start and keep_first else row.exp // 2, out=row.out // 2)
        for i, row in enumerate(rows[start:], start)
    ]
    return rows[:start] + tail, (last[0] // 2, last[1] // 2)


def _minimalize(rows: list[V3Row]) -> list[V3Row]:
    """The minimalistic models: no SE, ReLU only, 3×3 kernels only."""
    return [row._replace(k=3, se=False, nl="RE") for row in rows]


def v3_table(
    rows: list[V3Row],
    last_channels: tuple[int, int],
    width_mult: float = 1.0,
    channel_rules: str = "paper",
    reduced_tail: bool | str = False,
    minimalistic: bool = False,
) -> dict:
    """Table 1 or 2 with α, the reduced tail and the minimalistic changes applied: every block's
    expansion and output channels written out (see :mod:`mobilenets.models.table`)."""
    width_mult = check_width_mult(width_mult)
    if channel_rules not in CHANNEL_RULES:
        raise ConfigError(
            f"channel_rules must be one of {tuple(CHANNEL_RULES)}, got {channel_rules!r}"
        )
    rules = CHANNEL_RULES[channel_rules]
    if reduced_tail not in REDUCED_TAILS or (
        isinstance(reduced_tail, int | float) and not isinstance(reduced_tail, bool)
    ):
        raise ConfigError(f"reduced_tail must be one of {REDUCED_TAILS}, got {reduced_tail!r}")
    if reduced_tail:
        rows, last_channels = _reduce_tail(rows, last_channels, reduced_tail)
    if minimalistic:
        rows = _minimalize(rows)

    def scaled(channels: int) -> int:
        return make_divisible(channels * width_mult)

    fixed_stem = width_mult < rules.fixed_stem_below
    stem = V3_STEM_CHANNELS if fixed_stem else scaled(V3_STEM_CHANNELS)
    resolved, in_channels, paper_in = [], stem, V3_STEM_CHANNELS
    for row in rows:
        if rules.expansion == "scaled":
            hidden = scaled(row.exp)
        else:  # the TF reference keeps the expansion ratio exp/in of the paper's table
            hidden = make_divisible(in_channels * row.exp / paper_in)
        out = scaled(row.out)
        resolved.append(
            {"k": row.k, "exp": hidden, "out": out, "se": row.se, "nl": row.nl, "s": row.s}
        )
        in_channels, paper_in = out, row.out
    last_conv = 6 * in_channels if rules.last_conv == "six_times" else scaled(last_channels[0])
    head = {
        "scaled": scaled(last_channels[1]),
        "fixed": last_channels[1],
        "at_least_table": make_divisible(last_channels[1] * max(1.0, width_mult)),
    }[rules.head]
    head_nl = "RE" if minimalistic else "HS"
    return {"stem": stem, "rows": resolved, "last": [last_conv, head], "head_nl": head_nl}


# --- the pieces a V3 network is assembled from (NetAdapt's latency table builds the same) ----


def stem(table: dict, in_chans: int = 3, **norm: object) -> nn.Module:
    """The 3×3 stride-2 conv (16 channels, h-swish; ReLU when minimalistic)."""
    return ConvNormAct(in_chans, table["stem"], 3, stride=2, act=table["head_nl"], **norm)


def block(row: dict, in_channels: int, dilation: int = 1, **norm: object) -> nn.Module:
    """One bneck of a table row: expansion, k×k depthwise, optional SE, linear projection."""
    return InvertedResidual(
        in_channels,
        row["exp"],
        row["out"],
        row["k"],
        row["s"],
        row["nl"],
        row["se"],
        **norm,
        dilation=dilation,
    )


def head(table: dict, in_channels: int, **norm: object) -> tuple[nn.Module, nn.Module, int]:
    """The last 1×1 conv with BN (960/576), the pre-logits 1×1 conv without BN as a Linear
    (1280/1024), and the classifier's input width."""
    last_conv, head_channels = table["last"]
    act = table["head_nl"]
    pre_logits = nn.Sequential(nn.Linear(last_conv, head_channels), make_activation(act))
    return ConvNormAct(in_channels, last_conv, 1, act=act, **norm), pre_logits, head_channels


def _bnecks(
    rows: list[dict], in_channels: int, dilated: bool, norm: dict
) -> list[tuple[nn.Module, int, int]]:
    """One bneck per table row: (block, stride, output channels)."""
    blocks = []
    last_stage = max(i for i, row in enumerate(rows) if row["s"] == 2)
    for i, row in enumerate(rows):
        dilation = 2 if dilated and i >= last_stage else 1  # output stride 16
        blocks.append(
            (block(row, in_channels, dilation, **norm), 1 if dilation > 1 else row["s"], row["out"])
        )
        in_channels = row["out"]
    return blocks


class MobileNetV3(MobileNet):
    """MobileNetV3 from a bneck table (Tables 1 and 2).

    Args:
        rows: the bneck table.
        last_channels: (channels of the last 1×1 conv, channels of the pre-logits layer).
        width_mult: α (Table 3: 1.0 and 0.75).
        num_classes: classifier outputs (0: no classifier).
        in_chans: input image channels.
        dropout: dropout before the classifier.
        reduced_tail: halve the last stage and the head (for detection/segmentation):
            ``True`` or ``"detection"`` as torchvision and TF-slim, ``"deeplab"`` as the paper's
            segmentation backbone (:data:`REDUCED_TAILS`).
        minimalistic: no SE, no h-swish, 3×3 kernels only.
        channel_rules: ``"paper"``, ``"timm"``, ``"torchvision"`` or ``"keras"`` (see the module
            docstring).
        padding: ``"symmetric"`` or ``"tf_same"`` (TensorFlow's "same" on the stride-2 convs,
            as in Keras applications and timm's ``tf_mobilenetv3_*``).
        bn_eps: BatchNorm epsilon (1e-3 in the TF reference and torchvision; 1e-5 in timm).
        norm_layer: replaces BatchNorm (a callable of the channel count, torchvision's keyword).
        dilated: the last stage at stride 1 with dilation 2 (output stride 16, for
            segmentation; torchvision's keyword).
        features_only: return multi-scale feature maps (see ``feature_info``).
        out_indices: which feature maps ``features_only`` returns.
        table: every block's channels (:func:`v3_table`'s form) instead of the ones α, the
            channel rules, the reduced tail and minimalistic give; kept as ``model.table``.
    """

    def __init__(
        self,
        *,
        rows: list[V3Row],
        table: dict | None = None,
        last_channels: tuple[int, int],
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.2,
        reduced_tail: bool | str = False,
        minimalistic: bool = False,
        channel_rules: str = "paper",
        padding: str = "symmetric",
        bn_eps: float = 1e-3,
        norm_layer: Callable[[int], nn.Module] | None = None,
        dilated: bool = False,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        refuse_with_table(
            table,
            width_mult=(width_mult, 1.0),
            channel_rules=(channel_rules, "paper"),
            reduced_tail=(reduced_tail, False),
            minimalistic=(minimalistic, False),
        )
        if table is None:
            table = v3_table(
                rows, last_channels, width_mult, channel_rules, reduced_tail, minimalistic
            )
        table = check_table(table, "v3")
        norm = {"bn_eps": bn_eps, "norm_layer": norm_layer, "padding": check_padding(padding)}
        blocks = _bnecks(table["rows"], table["stem"], dilated, norm)
        last, pre_logits, head_channels = head(table, blocks[-1][2], **norm)
        last_conv = table["last"][0]
        blocks.append((last, 1, last_conv))  # the last 1×1 conv is a feature level (timm)
        super().__init__(
            stem=stem(table, in_chans, **norm),
            stem_channels=table["stem"],
            blocks=blocks,
            head=None,
            num_features=last_conv,
            pre_logits=pre_logits,
            classifier_in=head_channels,
            num_classes=num_classes,
            in_chans=in_chans,
            dropout=dropout,
            features_only=features_only,
            out_indices=out_indices,
        )
        self.table = table


register_model(
    "mobilenet_v3_large",
    MobileNetV3,
    paper="MobileNetV3, Table 1",
    preset={"rows": V3_LARGE_TABLE_1, "last_channels": V3_LARGE_LAST},
)
register_model(
    "mobilenet_v3_small",
    MobileNetV3,
    paper="MobileNetV3, Table 2",
    preset={"rows": V3_SMALL_TABLE_2, "last_channels": V3_SMALL_LAST},
)
