"""The reference libraries' networks that ``bench`` times beside ours."""

from __future__ import annotations

from torch import nn

REFERENCES = {  # our name -> (library, their name)
    "mobilenet_v1": ("timm", "mobilenetv1_100"),
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "mobilenet_v3_large": ("torchvision", "mobilenet_v3_large"),
    "mobilenet_v3_small": ("torchvision", "mobilenet_v3_small"),
    "lraspp_mobilenet_v3_large": ("torchvision", "segmentation.lraspp_mobilenet_v3_large"),
    "deeplabv3_mobilenet_v3_large": ("torchvision", "segmentation.deeplabv3_mobilenet_v3_large"),
    "ssdlite_mobilenet_v3_large": ("torchvision", "detection.ssdlite320_mobilenet_v3_large"),
}


def reference_model(name: str) -> tuple[str, nn.Module] | None:
    """torchvision's (or timm's, for V1) counterpart, or None when the library is missing or
    has none (torchvision ships no LR-ASPP on V3-Small or V2, no DeepLabv3 on V1/V2, SSDLite
    on V3-Large only)."""
    if name not in REFERENCES:
        return None
    library, theirs = REFERENCES[name]
    try:
        if library == "torchvision":
            import torchvision

            module, _, function = theirs.rpartition(".")
            builders = getattr(torchvision.models, module) if module else torchvision.models
            kwargs = {"weights_backbone": None} if module else {}  # nothing downloaded
            return library, getattr(builders, function)(**kwargs).eval()
        import timm

        return library, timm.create_model(theirs).eval()
    except ImportError:
        return None
