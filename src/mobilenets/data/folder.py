"""Image folders (``train/`` and ``val/`` inside, one subfolder per class), read safely.

A corrupt or unreadable image raises :class:`BadImageError` naming its path; with
``skip_bad_images`` the dataset returns ``None`` and the training loader drops and counts it
(``mobilenets.training.engine.collate_skipping_bad``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder


class BadImageError(ValueError):
    """An image file that cannot be decoded."""


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB, or raise :class:`BadImageError` naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise BadImageError(
            f"cannot read image {path}: {err}. Fix or remove the file, or pass "
            "--skip-bad-images (skip_bad_images=True) to skip and count such files"
        ) from err


class SafeImageFolder(ImageFolder):
    """torchvision's ``ImageFolder`` whose bad images fail with their path, or are skipped."""

    def __init__(
        self,
        root: str | Path,
        transform: Callable | None = None,
        skip_bad_images: bool = False,
        class_names: dict[str, str] | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        super().__init__(str(root), transform=transform, loader=load_rgb)
        self.skip_bad_images = skip_bad_images
        self.folder_names = list(self.classes)
        if class_names:
            self.classes = [class_names.get(c, c) for c in self.classes]

    def sample_name(self, index: int) -> str:
        return self.samples[index][0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            return super().__getitem__(index)
        except BadImageError:
            if self.skip_bad_images:
                return None
            raise
