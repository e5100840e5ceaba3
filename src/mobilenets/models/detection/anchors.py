"""SSD's default boxes (anchors), laid out as the TF Object Detection API builds them for the
MobileNet papers, or as torchvision's ``ssdlite320_mobilenet_v3_large`` does.

Both lay the scales linearly from ``min_scale`` to ``max_scale`` over the maps (SSD paper,
Eq. 4; 0.2 and 0.95 in every MobileNet SSD config) and centre the boxes on each map's cells.

- ``"tf"`` (``create_ssd_anchors`` with ``reduce_boxes_in_lowest_layer``): on the first map 3
  boxes, (0.1, 1:1), (s₀, 2:1), (s₀, 1:2); on every other map the aspect ratios
  {1, 2, 1/2, 3, 1/3} at s_k and a 1:1 box at √(s_k·s_{k+1}), in that order (6 boxes). Not
  clipped.
- ``"torchvision"`` (``DefaultBoxGenerator([[2, 3]] * 6, 0.2, 0.95)``): 6 boxes on every map,
  (s_k, 1:1), (√(s_k·s_{k+1}), 1:1), then 2:1, 1:2, 3:1, 1:3; clipped to the image.
"""

from __future__ import annotations

import math

import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

from mobilenets.errors import ConfigError

ANCHOR_LAYOUTS = ("tf", "torchvision")
#: The TF reference's first-map box scale (``reduce_boxes_in_lowest_layer``).
LOWEST_LAYER_SCALE = 0.1


class SSDAnchors(DefaultBoxGenerator):
    """Default boxes for ``num_maps`` feature maps (torchvision's generator; ``layout`` picks
    the boxes per cell, see the module docstring)."""

    def __init__(
        self,
        num_maps: int = 6,
        layout: str = "tf",
        min_scale: float = 0.2,
        max_scale: float = 0.95,
    ) -> None:
        if layout not in ANCHOR_LAYOUTS:
            raise ConfigError(f"anchors must be one of {ANCHOR_LAYOUTS}, got {layout!r}")
        if not 0.0 < min_scale < max_scale <= 1.0:
            raise ConfigError(
                f"anchor scales must satisfy 0 < min_scale < max_scale ≤ 1, "
                f"got {min_scale!r} and {max_scale!r}"
            )
        self.layout = layout
        super().__init__(
            [[2, 3] for _ in range(num_maps)], min_scale, max_scale, clip=layout != "tf"
        )

    def _generate_wh_pairs(
        self,
        num_outputs: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> list[torch.Tensor]:
        device = device or torch.device("cpu")
        if self.layout != "tf":
            return super()._generate_wh_pairs(num_outputs, dtype, device)
        pairs = []
        for k in range(num_outputs):
            scale = self.scales[k]
            if k == 0:
                boxes = [(LOWEST_LAYER_SCALE, 1.0), (scale, 2.0), (scale, 0.5)]
            else:
                boxes = [(scale, ratio) for ratio in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)]
                boxes.append((math.sqrt(scale * self.scales[k + 1]), 1.0))
            wh = [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in boxes]
            pairs.append(torch.as_tensor(wh, dtype=dtype, device=device))
        return pairs

    def num_anchors_per_location(self) -> list[int]:
        return [len(pairs) for pairs in self._wh_pairs]
