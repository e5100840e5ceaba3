"""Detection heads on the MobileNet backbones (torchvision's ``models/detection`` layout):
SSDLite (V2 and V3 papers) and SSD300 (V1 paper), with the TF reference's anchors."""

from mobilenets.models.detection.anchors import SSDAnchors
from mobilenets.models.detection.ssd import (
    DetectorGraph,
    ExportedDetector,
    MobileNetSSD,
    SSDFeatures,
    SSDHead,
    c4_block,
)

__all__ = [
    "DetectorGraph",
    "ExportedDetector",
    "MobileNetSSD",
    "SSDAnchors",
    "SSDFeatures",
    "SSDHead",
    "c4_block",
]
