"""scikit-learn's handwritten digits: 1,797 real 8×8 images, 10 classes, shipped with the package.

A fixed stratified split (80/20, seed 0: 1,437 train, 360 test), upsampled to the requested
resolution with bilinear interpolation, 3 channels. Training adds small random shifts (no
flips: a flipped digit is another symbol).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mobilenets.errors import ConfigError

DIGITS_MEAN = (0.3050,) * 3  # of the 8×8 images scaled to [0, 1]
DIGITS_STD = (0.3815,) * 3
TEST_FRACTION = 0.2
SPLIT_SEED = 0


class DigitsDataset(Dataset):
    """The digits split ``split`` ("train" or "val") at ``resolution`` px, as normalized tensors."""

    def __init__(self, split: str, resolution: int, augment: bool | None = None) -> None:
        if split not in ("train", "val"):
            raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
        # scikit-learn is imported when the digits are built, not with this module: a run on
        # other data never pays for its import (1–2 s)
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        data = load_digits()
        indices = np.arange(len(data.target))
        train_idx, val_idx = train_test_split(
            indices, test_size=TEST_FRACTION, stratify=data.target, random_state=SPLIT_SEED
        )
        self.indices = train_idx if split == "train" else val_idx
        images = torch.from_numpy(data.images[self.indices]).float().div_(16.0).unsqueeze(1)
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear")
        self.images = (images - DIGITS_MEAN[0]) / DIGITS_STD[0]  # (N, 1, R, R)
        self.targets = torch.from_numpy(data.target[self.indices]).long()
        self.classes = [str(d) for d in range(10)]
        self.augment = (split == "train") if augment is None else augment
        self._augment = v2.RandomAffine(degrees=0, translate=(0.08, 0.08))

    def __len__(self) -> int:
        return len(self.targets)

    def sample_name(self, index: int) -> str:
        return f"digits/{int(self.indices[index])}"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:  # torchvision draws the shift; applied as the whole-pixel shift it is
            image = shift(image, *self._augment.make_params([image])["translate"])
        return image.expand(3, -1, -1), int(self.targets[index])


def shift(image: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``image`` (…×H×W) moved ``dx`` pixels right and ``dy`` down, zeros where it left: what
    torchvision's ``RandomAffine(degrees=0, translate=…)`` computes for the whole-pixel shifts
    it draws (nearest sampling on an affine grid), to the bit: 33 µs a 32-px digit with
    torchvision's draw instead of 214 through the grid, on the VNNI Xeon, where an epoch of V1
    α 0.5 at 32 px takes about 1.9 s."""
    height, width = image.shape[-2:]
    out = torch.zeros_like(image)
    if abs(dx) >= width or abs(dy) >= height:
        return out
    rows_to, rows_from = (
        slice(max(dy, 0), height + min(dy, 0)),
        slice(max(-dy, 0), height - max(dy, 0)),
    )
    cols_to, cols_from = (
        slice(max(dx, 0), width + min(dx, 0)),
        slice(max(-dx, 0), width - max(dx, 0)),
    )
    out[..., rows_to, cols_to] = image[..., rows_from, cols_from]
    return out
