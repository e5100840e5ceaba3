"""The trunk every MobileNet shares: stem → blocks → head → pool → pre-logits → classifier.

Model files build the parts from their paper's table; this class wires them together, records
``feature_info`` while doing so (one entry per stride level, timm's convention), checks inputs and
implements ``features_only`` for detection and segmentation backbones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from mobilenets.errors import ConfigError, ConfigTypeError
from mobilenets.layers import init_weights

MIN_INPUT_SIZE = 32  # five stride-2 stages need at least 32 px to keep a 1×1 map at the end


class FeatureInfo(NamedTuple):
    """One multi-scale feature map: where it is tapped, its channels and its stride."""

    module: str
    channels: int
    reduction: int


def check_width_mult(width_mult: float) -> float:
    """Validate the width multiplier α (V1 paper, Section 3.3): any finite number > 0."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, int | float):
        raise ConfigTypeError(f"width_mult must be a number > 0, got {width_mult!r}")
    if not (width_mult > 0 and width_mult < float("inf")):
        raise ConfigError(
            f"width_mult (α) must be a finite number > 0 (the papers use 0.25–1.4), "
            f"got {width_mult}"
        )
    return float(width_mult)


class MobileNet(nn.Module):
    """Shared trunk of MobileNet V1/V2/V3 (built by the family modules, not directly).

    Args:
        stem: the first full 3×3 stride-2 convolution.
        blocks: the table's rows as modules, each with its stride and output channels.
        head: the last 1×1 conv before pooling (V2's 1280) or ``None``.
        num_features: channels entering ``pre_logits`` (after ``head``).
        pre_logits: layers between pooling and the classifier (V3's 1×1 "NBN" conv as a Linear).
        classifier_in: features entering the classifier.
        num_classes: 0 gives a model that returns pooled features.
        in_chans: channels of the input image.
        dropout: dropout before the classifier.
        features_only: return the multi-scale maps at ``out_indices`` instead of logits.
        out_indices: which of ``feature_info`` to return (default: all five).
    """

    def __init__(
        self,
        *,
        stem: nn.Module,
        stem_channels: int,
        blocks: Sequence[tuple[nn.Module, int, int]],
        head: nn.Module | None,
        pre_logits: nn.Module | None,
        classifier_in: int,
        num_classes: int,
        in_chans: int,
        dropout: float,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ConfigError(f"num_classes must be ≥ 0, got {num_classes}")
        if in_chans < 1:
            raise ConfigError(f"in_chans must be ≥ 1, got {in_chans}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.stem = stem
        self.blocks = nn.Sequential(*(module for module, _, _ in blocks))

        # feature_info: the last module at each reduction (timm's convention). Stage position 0 is
        # the stem, position i + 1 is blocks.i.
        taps = {2: (0, FeatureInfo("stem", stem_channels, 2))}
        reduction = 2
        for i, (_, stride, channels) in enumerate(blocks):
            reduction *= stride
            taps[reduction] = (i + 1, FeatureInfo(f"blocks.{i}", channels, reduction))
        positions, all_info = zip(*(taps[r] for r in sorted(taps)), strict=True)
        indices = range(len(all_info)) if out_indices is None else out_indices
        for index in indices:
            if not -len(all_info) <= index < len(all_info):
                raise ConfigError(
                    f"out_indices entry {index} is out of range; allowed: 0..{len(all_info) - 1}"
                )
        self._out_indices = [i % len(all_info) for i in indices]
        self._tap_positions = list(positions)
        self.feature_info = (
            [all_info[i] for i in self._out_indices] if features_only else list(all_info)
        )

        self.features_only = features_only
        if features_only:
            self.head = self.pre_logits = self.classifier = None
            self.pool = self.head_drop = None
        else:
            self.head = head if head is not None else nn.Identity()
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
            self.pre_logits = pre_logits if pre_logits is not None else nn.Identity()
            self.head_drop = nn.Dropout(dropout)
            self.classifier = (
                nn.Linear(classifier_in, num_classes) if num_classes > 0 else nn.Identity()
            )
        init_weights(self)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for a batch this network cannot take."""
        if x.dim() != 4:
            raise ConfigError(f"expected a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ConfigError(
                f"this model expects {self.in_chans}-channel images, got {x.shape[1]} channels "
                f"(shape {tuple(x.shape)}); build it with in_chans={x.shape[1]} for such input"
            )
        if x.shape[2] < MIN_INPUT_SIZE or x.shape[3] < MIN_INPUT_SIZE:
            raise ConfigError(
                f"input {x.shape[2]}×{x.shape[3]} px is too small: MobileNets take any "
                f"resolution ≥ {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE} px"
            )

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Return the feature maps listed in ``feature_info`` (all, or those at ``indices``)."""
        self.check_input(x)
        wanted = sorted(self._out_indices if indices is None else indices)
        taps = {self._tap_positions[n]: n for n in wanted}
        outputs = []
        for position, stage in enumerate([self.stem, *self.blocks][: max(taps) + 1]):
            x = stage(x)
            if position in taps:
                outputs.append(x)
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and blocks: the last, stride-32 feature map (timm's ``forward_features``)."""
        self.check_input(x)
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Head conv, global average pool, pre-logits, dropout and classifier."""
        x = self.pre_logits(self.pool(self.head(x)))
        return x if pre_logits else self.classifier(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_intermediates(x)
        return self.forward_head(self.forward_features(x))
