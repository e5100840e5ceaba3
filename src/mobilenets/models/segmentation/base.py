"""The trunk every segmenter shares: a MobileNet backbone's taps → a head → logits upsampled to
the input, returned as torchvision's segmentation models return them: ``{"out": ...}`` (and
``"aux"`` with an auxiliary head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.errors import ConfigError
from mobilenets.models.base import MobileNet
from mobilenets.models.registry import create_model

#: What every segmenter's ``pretrained_cfg`` says about its input (torchvision's references
#: resize the shorter side to 520 px; any size ≥ 32 px works).
SEGMENTATION_INPUT_SIZE = 512


def backbone(name: str, **kwargs: object) -> MobileNet:
    """A classification family's network as a backbone: ``features_only`` (no pooling, no
    classifier; V2's 1280-channel conv dropped, V3's last 1×1 conv kept, as torchvision does)."""
    return create_model(name, features_only=True, **kwargs)


def first_position(net: MobileNet, reduction: int) -> int:
    """The stage (0: stem, i + 1: ``blocks.i``) whose output first reaches ``reduction``: where
    torchvision's dense heads tap their low-level features."""
    for position, value in enumerate(net.stage_reductions):
        if value == reduction:
            return position
    raise ConfigError(
        f"the backbone never reaches output stride {reduction} "
        f"(its strides: {sorted(set(net.stage_reductions))})"
    )


def check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer ≥ 1, got {num_classes!r}")
    return num_classes


class SegmentationModel(nn.Module):
    """Backbone taps → head (→ auxiliary head), logits bilinearly upsampled to the input size.

    Args:
        backbone: a ``features_only`` MobileNet.
        taps: the stages the head reads (positions as in
            :meth:`~mobilenets.models.base.MobileNet.forward_stages`).
        head: a module called with the tapped maps, in order, returning logits.
        aux_taps: the stage the auxiliary head reads (-1: none).
        aux_classifier: torchvision's FCN auxiliary head, or ``None``.
    """

    __constants__ = ("aux_position",)

    def __init__(
        self,
        backbone: MobileNet,
        taps: list[int],
        classifier: nn.Module,
        num_classes: int,
        aux_classifier: nn.Module | None = None,
        aux_position: int = -1,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.taps = list(taps)
        self.aux_position = aux_position
        self.positions = sorted(set(self.taps + ([aux_position] if aux_position >= 0 else [])))
        self.in_chans = backbone.in_chans
        self.num_classes = num_classes
        self.task = "segmentation"
        self.pretrained_cfg = {
            **backbone.pretrained_cfg,
            "input_size": (backbone.in_chans, SEGMENTATION_INPUT_SIZE, SEGMENTATION_INPUT_SIZE),
            "crop_pct": 1.0,
            "num_classes": num_classes,
            "classifier": "classifier",
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"out": logits at the input's size}`` (and ``"aux"``), as torchvision's models."""
        size = (x.shape[-2], x.shape[-1])
        maps = self.backbone.forward_stages(x, self.positions)
        tapped = [maps[self.positions.index(p)] for p in self.taps]
        out = self.classifier(tapped)
        result = {"out": F.interpolate(out, size=size, mode="bilinear", align_corners=False)}
        if self.aux_classifier is not None:
            aux = self.aux_classifier(maps[self.positions.index(self.aux_position)])
            result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return result
