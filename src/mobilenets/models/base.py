"""The trunk every MobileNet shares: stem → blocks → head → pool → pre-logits → classifier.

Model files build the parts from their paper's table; this class wires them together, records
``feature_info`` while doing so (one entry per stride level, timm's convention), checks inputs and
implements ``features_only`` for detection and segmentation backbones. It is also the contract
timm's and torchvision's tools rely on (the same for every family): ``torch.jit.script``,
``torch.fx`` and ``create_feature_extractor``, ``torch.export``, ``pretrained_cfg``,
``num_features``/``head_hidden_size``, ``get_classifier``/``reset_classifier``,
``set_grad_checkpointing`` and timm's ``forward_intermediates``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx
from torch import nn
from torch.utils.checkpoint import checkpoint

from mobilenets.catalog import MIN_INPUT_SIZE
from mobilenets.errors import ConfigError, ConfigTypeError
from mobilenets.layers import init_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the papers' (and torchvision's, timm's) normalization
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureInfo(dict):
    """One multi-scale feature map, as timm describes it (``num_chs``, ``reduction``,
    ``module``), with attribute access (``info.channels``, ``info.reduction``, ``info.module``)."""

    def __init__(self, module: str, channels: int, reduction: int) -> None:
        super().__init__(num_chs=channels, reduction=reduction, module=module)

    @property
    def channels(self) -> int:
        return self["num_chs"]

    @property
    def reduction(self) -> int:
        return self["reduction"]

    @property
    def module(self) -> str:
        return self["module"]


class FeatureInfoList(list):
    """``feature_info``: a list of :class:`FeatureInfo` with timm's ``FeatureInfo`` helpers."""

    def channels(self, idx: int | None = None) -> int | list[int]:
        return self[idx].channels if idx is not None else [f.channels for f in self]

    def reduction(self, idx: int | None = None) -> int | list[int]:
        return self[idx].reduction if idx is not None else [f.reduction for f in self]

    def module_name(self, idx: int | None = None) -> str | list[str]:
        return self[idx].module if idx is not None else [f.module for f in self]

    def get_dicts(self) -> list[dict]:
        return [dict(f) for f in self]


def check_image_batch(x: torch.Tensor, in_chans: int) -> None:
    """Raise a clear error for a batch a MobileNet cannot take (eager mode; a leaf for
    ``torch.fx``, skipped by ``torch.jit.script``)."""
    if x.dim() != 4:
        raise ConfigError(f"expected a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ConfigError(
            f"this model expects {in_chans}-channel images, got {x.shape[1]} channels "
            f"(shape {tuple(x.shape)}); build it with in_chans={x.shape[1]} for such input"
        )
    if x.shape[2] < MIN_INPUT_SIZE or x.shape[3] < MIN_INPUT_SIZE:
        raise ConfigError(
            f"input {x.shape[2]}×{x.shape[3]} px is too small: MobileNets take any "
            f"resolution ≥ {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE} px"
        )


torch.fx.wrap("check_image_batch")  # FX records the call instead of tracing into it


def atrous_schedule(strides: Sequence[int], output_stride: int) -> list[tuple[int, int]]:
    """(stride, dilation) of each stage after the stride-2 stem for ``output_stride`` 8, 16 or
    32, by TensorFlow DeepLab's rule (the V2 paper's Section 6.3): once the output stride is
    reached, a stage that would stride keeps the resolution at the current rate and every later
    one multiplies the rate by that stride (atrous convolution, Chen et al. 2017)."""
    if isinstance(output_stride, bool) or output_stride not in (8, 16, 32):
        raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    schedule, current, rate = [], 2, 1
    for stride in strides:
        if current == output_stride and stride > 1:
            schedule.append((1, rate))
            rate *= stride
        else:
            schedule.append((stride, rate))
            current *= stride
    return schedule


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
        stem_channels: its output channels.
        blocks: the table's rows as modules, each with its stride and output channels.
        head: the last 1×1 conv before pooling (V2's 1280) or ``None``.
        num_features: channels of ``forward_features``' output (after ``head``).
        pre_logits: layers between pooling and the classifier (V3's 1×1 "NBN" conv as a Linear).
        classifier_in: features entering the classifier (timm's ``head_hidden_size``).
        num_classes: 0 gives a model that returns pooled features.
        in_chans: channels of the input image.
        dropout: dropout before the classifier.
        features_only: return the multi-scale maps at ``out_indices`` instead of logits.
        out_indices: which of ``feature_info`` to return (default: all five).
    """

    __constants__ = ("features_only", "_out_positions", "_last_position")  # for torch.jit.script

    def __init__(
        self,
        *,
        stem: nn.Module,
        stem_channels: int,
        blocks: Sequence[tuple[nn.Module, int, int]],
        head: nn.Module | None,
        num_features: int,
        pre_logits: nn.Module | None,
        classifier_in: int,
        num_classes: int,
        in_chans: int,
        dropout: float,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = num_features
        self.head_hidden_size = classifier_in
        self.grad_checkpointing = False
        self.stem = stem
        self.blocks = nn.Sequential(*(module for module, _, _ in blocks))

        # feature_info: the last module at each reduction (timm's convention). Stage position 0 is
        # the stem, position i + 1 is blocks.i.
        taps = {2: (0, FeatureInfo("stem", stem_channels, 2))}
        reduction = 2
        for i, (_, stride, channels) in enumerate(blocks):
            reduction *= stride
            taps[reduction] = (i + 1, FeatureInfo(f"blocks.{i}", channels, reduction))
        # the output stride and channels after each stage (the stem, then each block)
        self.stage_reductions, self.stage_channels = [2], [stem_channels]
        for _, stride, channels in blocks:
            self.stage_reductions.append(self.stage_reductions[-1] * stride)
            self.stage_channels.append(channels)
        positions, all_info = zip(*(taps[r] for r in sorted(taps)), strict=True)
        self._tap_positions = list(positions)
        self._all_feature_info = FeatureInfoList(all_info)
        out = self._feature_levels(range(len(all_info)) if out_indices is None else out_indices)
        self._out_positions = [self._tap_positions[i] for i in out]
        self._last_position = max(self._out_positions)
        self.feature_info = (
            FeatureInfoList(all_info[i] for i in out) if features_only else self._all_feature_info
        )
        self.features_only = features_only
        self.head = head if head is not None and not features_only else nn.Identity()
        if features_only:
            self.pool = self.pre_logits = self.head_drop = self.classifier = None
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
            self.pre_logits = pre_logits if pre_logits is not None else nn.Identity()
            self.head_drop = nn.Dropout(dropout)
            self.classifier = (
                nn.Linear(classifier_in, num_classes) if num_classes > 0 else nn.Identity()
            )
        self.pretrained_cfg = {
            "input_size": (in_chans, 224, 224),
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "num_classes": num_classes,
            "first_conv": "stem.conv",
            "classifier": "classifier",
        }
        init_weights(self)

    def _feature_levels(self, indices: Sequence[int]) -> list[int]:
        n = len(self._all_feature_info)
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
                raise ConfigError(f"feature index {index!r} is out of range; allowed: 0..{n - 1}")
        return sorted({i % n for i in indices})

    # --- forward ----------------------------------------------------------------------------

    def _stages(
        self, x: torch.Tensor, positions: list[int], last: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the stem and the blocks up to stage ``last``; collect the maps at ``positions``
        (stage 0 is the stem, stage i + 1 is ``blocks.i``)."""
        maps: list[torch.Tensor] = []
        x = self.stem(x)
        if 0 in positions:
            maps.append(x)
        for i, block in enumerate(self.blocks):
            if i < last:
                x = block(x)
                if i + 1 in positions:
                    maps.append(x)
        return x, maps

    def forward_stages(self, x: torch.Tensor, positions: list[int]) -> list[torch.Tensor]:
        """The maps after the stages at ``positions`` (0: the stem, i + 1: ``blocks.i``), in
        that order: the taps the dense heads take (e.g. torchvision's LR-ASPP takes the first
        stride-8 block)."""
        if not torch.jit.is_scripting():
            check_image_batch(x, self.in_chans)
        return self._stages(x, positions, max(positions))[1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, blocks and the head conv (V2's 1×1 → 1280): the last, stride-32 map, as
        timm's ``forward_features``."""
        if not torch.jit.is_scripting():
            check_image_batch(x, self.in_chans)
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(self.stem, x, use_reentrant=False)
                for block in self.blocks:
                    x = checkpoint(block, x, use_reentrant=False)
                return self.head(x)
        return self.head(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, pre-logits, dropout and classifier (timm's ``forward_head``)."""
        x = self.pre_logits(self.pool(x))
        return x if pre_logits else self.classifier(self.head_drop(x))

    def forward(self, x: torch.Tensor):  # Tensor, or list[Tensor] when features_only
        """Logits, or the feature maps of ``feature_info`` for a ``features_only`` model. (No
        return annotation: ``torch.jit.script`` infers it from the branch ``features_only``, a
        constant, selects.)"""
        if self.features_only:
            if not torch.jit.is_scripting():
                check_image_batch(x, self.in_chans)
            return self._stages(x, self._out_positions, self._last_position)[1]
        return self.forward_head(self.forward_features(x))

    # --- timm's interface -------------------------------------------------------------------

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: the maps of ``feature_info``'s levels (all, the
        last ``indices`` when an int, or those listed) and, unless ``intermediates_only``, the
        ``forward_features`` output: ``(final, intermediates)``."""
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        n = len(self._all_feature_info)
        if indices is None:
            levels = list(range(n))
        elif isinstance(indices, int) and not isinstance(indices, bool):
            levels = self._feature_levels(range(n - indices, n))
        else:
            levels = self._feature_levels(indices)
        check_image_batch(x, self.in_chans)
        positions = [self._tap_positions[i] for i in levels]
        last = max(positions) if intermediates_only or stop_early else len(self.blocks)
        x, maps = self._stages(x, positions, last)
        return maps if intermediates_only else (self.head(x), maps)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier with ``num_classes`` outputs (0: pooled features), initialised."""
        if global_pool not in (None, "avg"):
            raise ConfigError(
                f"global_pool must be 'avg' (MobileNets pool by average), got {global_pool!r}"
            )
        if self.features_only:
            raise ConfigError("a features_only model has no classifier")
        self.num_classes = num_classes
        self.classifier = (
            nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        )
        init_weights(self.classifier)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}
        if hasattr(self, "model_kwargs"):
            self.model_kwargs = {**self.model_kwargs, "num_classes": num_classes}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them."""
        self.grad_checkpointing = enable
