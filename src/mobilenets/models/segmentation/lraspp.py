"""LR-ASPP, Lite Reduced Atrous Spatial Pyramid Pooling (MobileNetV3 paper, Section 6.4,
Figure 10), on V3-Large, V3-Small and V2 (Table 7).

The last (stride-16, atrous) map goes through a 1×1 conv (``filters``, BN, ReLU), gated by a
squeeze-excite-like branch: pooling → 1×1 conv → sigmoid. The gated map is upsampled to the
stride-8 map, classified by a 1×1 conv and added to a 1×1 classifier of the stride-8 features.
The gate's pooling is global (torchvision's ``lraspp_mobilenet_v3_large``) or the paper's "large
pooling kernel with a large stride": 49×49 with stride (16, 20), the map then upsampled back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.errors import ConfigError
from mobilenets.models.registry import register_model
from mobilenets.models.segmentation.base import (
    SegmentationModel,
    backbone,
    check_num_classes,
    first_position,
)

#: Figure 10: "49×49 average pooling, stride (16, 20)" on the 1/16 map of a 1024×2048 image.
PAPER_POOL_KERNEL = (49, 49)
PAPER_POOL_STRIDE = (16, 20)
POOLINGS = ("global", "paper")


class LRASPPHead(nn.Module):
    """Figure 10's head: ``cbr`` (1×1 conv, BN, ReLU) × ``scale`` (pool, 1×1 conv, sigmoid),
    upsampled, ``high_classifier`` + ``low_classifier`` (torchvision's names)."""

    __constants__ = ("paper_pooling",)

    def __init__(
        self,
        low_channels: int,
        high_channels: int,
        num_classes: int,
        filters: int = 128,
        pooling: str = "global",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if isinstance(filters, bool) or not isinstance(filters, int) or not 1 <= filters <= 4096:
            raise ConfigError(
                f"filters must be an integer in [1, 4096] (the paper: 128 or 256), got {filters!r}"
            )
        self.paper_pooling = pooling == "paper"
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, filters, 1, bias=False),
            nn.BatchNorm2d(filters),
            nn.ReLU(inplace=True),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, filters, 1, bias=False),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(filters, num_classes, 1)

    def _gate(self, high: torch.Tensor) -> torch.Tensor:
        if not self.paper_pooling:
            return self.scale(high)
        height, width = high.shape[-2], high.shape[-1]
        kernel = [min(PAPER_POOL_KERNEL[0], height), min(PAPER_POOL_KERNEL[1], width)]
        pooled = F.avg_pool2d(high, kernel, [PAPER_POOL_STRIDE[0], PAPER_POOL_STRIDE[1]])
        gate = self.scale[2](self.scale[1](pooled))
        return F.interpolate(gate, size=(height, width), mode="bilinear", align_corners=False)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        low, high = maps[0], maps[1]
        x = self.cbr(high) * self._gate(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


class LRASPP(SegmentationModel):
    """LR-ASPP on a MobileNet (V3 paper, Table 7).

    Args:
        backbone_name: ``mobilenet_v3_large``, ``mobilenet_v3_small`` or ``mobilenet_v2``.
        num_classes: output classes (19 for Cityscapes, 21 for VOC).
        width_mult: α of the backbone.
        reduced_tail: halve the last stage (V3's "RF2"; V3 only).
        filters: channels of the head ("F" in Table 7: 128 or 256).
        pooling: ``"global"`` (torchvision) or ``"paper"`` (49×49, stride (16, 20)).
        in_chans: input image channels.
        backbone_kwargs: any other keyword of the backbone's family (``channel_rules``,
            ``bn_eps``, ...).

    The backbone runs at output stride 16 (V3's last stage atrous; V2's ``output_stride=16``);
    the low-level features are the first stride-8 block's (where torchvision taps them).
    """

    def __init__(
        self,
        *,
        backbone_name: str,
        num_classes: int = 21,
        width_mult: float = 1.0,
        reduced_tail: bool = False,
        filters: int = 128,
        pooling: str = "global",
        in_chans: int = 3,
        backbone_kwargs: dict | None = None,
    ) -> None:
        check_num_classes(num_classes)
        extra = dict(backbone_kwargs or {})
        if backbone_name.startswith("mobilenet_v3"):
            extra.update(dilated=True, reduced_tail=reduced_tail)
        elif reduced_tail:
            raise ConfigError("reduced_tail is a MobileNetV3 setting (Table 7's RF2)")
        else:
            extra.update(output_stride=16)
        net = backbone(backbone_name, width_mult=width_mult, in_chans=in_chans, **extra)
        low, high = first_position(net, 8), len(net.stage_reductions) - 1
        head = LRASPPHead(
            net.stage_channels[low], net.stage_channels[high], num_classes, filters, pooling
        )
        super().__init__(net, [low, high], head, num_classes)


for _name, _backbone in (
    ("lraspp_mobilenet_v3_large", "mobilenet_v3_large"),
    ("lraspp_mobilenet_v3_small", "mobilenet_v3_small"),
    ("lraspp_mobilenet_v2", "mobilenet_v2"),
):
    register_model(
        _name,
        LRASPP,
        paper="MobileNetV3, Section 6.4 and Table 7 (LR-ASPP)",
        preset={"backbone_name": _backbone},
        input_size=512,
        task="segmentation",
    )
