"""Segmentation heads on the MobileNet backbones (torchvision's ``models/segmentation``
layout): LR-ASPP (V3 paper), DeepLabv3 with ASPP or the reduced head (V2 paper)."""

from mobilenets.models.segmentation.base import SegmentationModel
from mobilenets.models.segmentation.deeplabv3 import ASPP, DeepLabV3
from mobilenets.models.segmentation.lraspp import LRASPP, LRASPPHead

__all__ = ["ASPP", "LRASPP", "DeepLabV3", "LRASPPHead", "SegmentationModel"]
