"""torchvision transforms for training and evaluation at a given resolution (ρ·224).

Train: random resized crop + horizontal flip; eval: resize to ``resolution / 0.875`` and center
crop (crop ratio 0.875, as torchvision's and timm's ImageNet evaluation).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from mobilenets.models.base import IMAGENET_MEAN, IMAGENET_STD  # the models' default (timm's)

__all__ = ["CROP_RATIO", "IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "train_transform"]

CROP_RATIO = 0.875


def eval_resize_size(resolution: int) -> int:
    """Short side before the center crop: ``round(resolution / 0.875)``."""
    return round(resolution / CROP_RATIO)


def _normalize(mean: tuple[float, ...], std: tuple[float, ...]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transform(
    resolution: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    scale: tuple[float, float] = (0.25, 1.0),
    hflip: bool = True,
) -> v2.Compose:
    """Random resized crop (scale range ``scale``), flip, to float, normalize."""
    steps: list[v2.Transform] = [v2.RandomResizedCrop(resolution, scale=scale)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose([*steps, v2.ToImage(), *_normalize(mean, std)])


def eval_transform(
    resolution: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    resize: int | None = None,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Resize the short side to ``resize`` (default ``resolution / 0.875``), center crop, to
    float, normalize.

    Resizing and cropping happen on the PIL image when given one, as in torchvision's
    ``ImageClassification`` preset: the result equals torchvision's preprocessing for its
    weights (tested), which reproducing their published accuracy needs.
    """
    return v2.Compose(
        [
            v2.Resize(
                resize or eval_resize_size(resolution),
                interpolation=v2.InterpolationMode(interpolation),
            ),
            v2.CenterCrop(resolution),
            v2.ToImage(),
            *_normalize(mean, std),
        ]
    )
