"""The reference libraries' networks that ``bench`` times beside ours."""

from __future__ import annotations

from torch import nn

REFERENCES = {  # our name -> (library, their name)
    "mobilenet_v1": ("timm", "mobilenetv1_100"),
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "mobilenet_v3_large": ("torchvision", "mobilenet_v3_large"),
    "mobilenet_v3_small": ("torchvision", "mobilenet_v3_small"),
}


def reference_model(name: str) -> tuple[str, nn.Module] | None:
    """torchvision's (or timm's, for V1) counterpart, or None when the library is missing."""
    library, theirs = REFERENCES[name]
    try:
        if library == "torchvision":
            import torchvision

            return library, getattr(torchvision.models, theirs)().eval()
        import timm

        return library, timm.create_model(theirs).eval()
    except ImportError:
        return None
