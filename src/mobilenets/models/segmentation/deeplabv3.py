"""Mobile DeepLabv3 (MobileNetV2 paper, Section 6.3 and Table 7) and torchvision's
``deeplabv3_mobilenet_v3_large``.

ASPP (Chen et al. 2017): a 1×1 conv, three 3×3 atrous convs and image pooling, 256 channels
each, concatenated and projected by a 1×1 conv. The V2 paper attaches it to the second-to-last
map (V2's 320 channels, "MNet V2*"; V1's 1024) at output stride 16 or 8 and classifies the
projection with a 1×1 conv; without the three atrous branches it is the reduced head the V3
paper calls R-ASPP ("removing the ASPP module significantly reduces the MAdds from 5.8B to
2.75B"). torchvision's model adds a 3×3 conv before the classifier and an FCN auxiliary head on
the stride-8 map. Module names are torchvision's (``classifier.0.convs.1.0``, ...).
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

ASPP_CHANNELS = 256


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1):
    padding = dilation if kernel == 3 else 0
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Sequential):
    """Image pooling: global average → 1×1 conv, BN, ReLU → broadcast back to the map."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``convs`` (1×1, one 3×3 per rate, image pooling), then
    ``project`` (1×1 conv, BN, ReLU, dropout 0.5, as torchvision)."""

    def __init__(self, in_channels: int, rates: tuple[int, ...], out_channels: int = 256) -> None:
        super().__init__()
        branches = [_conv_bn_relu(in_channels, out_channels)]
        branches += [_conv_bn_relu(in_channels, out_channels, 3, rate) for rate in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            *_conv_bn_relu(len(branches) * out_channels, out_channels), nn.Dropout(0.5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """ASPP → (torchvision: 3×3 conv, BN, ReLU) → 1×1 classifier, on the last tapped map."""

    def __init__(
        self, in_channels: int, num_classes: int, rates: tuple[int, ...], head_conv: bool
    ) -> None:
        layers: list[nn.Module] = [ASPP(in_channels, rates, ASPP_CHANNELS)]
        if head_conv:
            layers += list(_conv_bn_relu(ASPP_CHANNELS, ASPP_CHANNELS, 3))
        layers.append(nn.Conv2d(ASPP_CHANNELS, num_classes, 1))
        super().__init__(*layers)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        x = maps[-1]
        for module in self:
            x = module(x)
        return x


class FCNHead(nn.Sequential):
    """torchvision's auxiliary head: 3×3 conv to in/4 channels, BN, ReLU, dropout, 1×1."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(
            *_conv_bn_relu(in_channels, inter, 3), nn.Dropout(0.1), nn.Conv2d(inter, num_classes, 1)
        )


class DeepLabV3(SegmentationModel):
    """DeepLabv3 on a MobileNet.

    Args:
        backbone_name: ``mobilenet_v3_large``, ``mobilenet_v2`` or ``mobilenet_v1``.
        num_classes: output classes (21 for VOC, Table 7 of the V2 paper).
        width_mult: α of the backbone.
        output_stride: 16 or 8 (V1, V2; V3's atrous last stage gives 16).
        aspp: the three atrous branches; ``False`` leaves the 1×1 conv and image pooling (the
            reduced head, R-ASPP).
        rates: the atrous rates (default: V1/V2 as the paper's code, 6, 12, 18 at output stride
            16 and doubled at 8; V3 as torchvision, 12, 24, 36).
        head_conv: torchvision's 3×3 conv before the classifier (default: on for V3 only).
        aux_loss: torchvision's FCN auxiliary head on the first stride-8 map (output ``"aux"``).
        reduced_tail: V3's halved last stage.
        in_chans: input image channels.
        backbone_kwargs: any other keyword of the backbone's family.
    """

    def __init__(
        self,
        *,
        backbone_name: str,
        num_classes: int = 21,
        width_mult: float = 1.0,
        output_stride: int = 16,
        aspp: bool = True,
        rates: tuple[int, ...] | list[int] | None = None,
        head_conv: bool | None = None,
        aux_loss: bool = False,
        reduced_tail: bool = False,
        in_chans: int = 3,
        backbone_kwargs: dict | None = None,
    ) -> None:
        check_num_classes(num_classes)
        v3 = backbone_name.startswith("mobilenet_v3")
        extra = dict(backbone_kwargs or {})
        if v3:
            if output_stride != 16:
                raise ConfigError(
                    f"a MobileNetV3 backbone runs at output stride 16 (its last stage atrous), "
                    f"got output_stride={output_stride!r}"
                )
            extra.update(dilated=True, reduced_tail=reduced_tail)
        else:
            if reduced_tail:
                raise ConfigError("reduced_tail is a MobileNetV3 setting")
            extra.update(output_stride=output_stride)
        if rates is None:
            rates = (12, 24, 36) if v3 or output_stride == 8 else (6, 12, 18)
        rates = tuple(rates)
        if not rates or any(
            isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 256 for r in rates
        ):
            raise ConfigError(f"rates must be integers in [1, 256], got {rates!r}")
        head_conv = v3 if head_conv is None else head_conv
        net = backbone(backbone_name, width_mult=width_mult, in_chans=in_chans, **extra)
        last = len(net.stage_reductions) - 1
        head = DeepLabHead(net.stage_channels[last], num_classes, rates if aspp else (), head_conv)
        aux, aux_position = None, -1
        if aux_loss:
            aux_position = first_position(net, 8)
            aux = FCNHead(net.stage_channels[aux_position], num_classes)
        super().__init__(net, [last], head, num_classes, aux, aux_position)


for _name, _backbone, _paper in (
    ("deeplabv3_mobilenet_v3_large", "mobilenet_v3_large", "torchvision's DeepLabv3 on V3-Large"),
    ("deeplabv3_mobilenet_v2", "mobilenet_v2", "MobileNetV2, Section 6.3 and Table 7 (MNet V2*)"),
    ("deeplabv3_mobilenet_v1", "mobilenet_v1", "MobileNetV2, Table 7 (MNet V1)"),
):
    register_model(
        _name,
        DeepLabV3,
        paper=_paper,
        preset={"backbone_name": _backbone},
        input_size=512,
        task="segmentation",
    )
