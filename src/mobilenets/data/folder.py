"""Image folders (``train/`` and ``val/`` inside, one subfolder per class), read safely.

A corrupt or unreadable image (truncated, not an image, a decompression bomb, a symlink loop)
raises :class:`BadImageError` naming its path; with ``skip_bad_images`` the dataset returns
``None`` and the loaders drop and count it (``mobilenets.training.engine.collate_skipping_bad``).
Every image mode becomes 8-bit RGB the way a viewer shows it: 16-bit images are scaled (not
clipped), palette, CMYK, grayscale and images with alpha are converted.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from mobilenets.errors import BadImageError, DataError, MissingDataError, display
from mobilenets.schema import is_special_file

__all__ = ["BadImageError", "SafeImageFolder", "load_rgb", "to_rgb"]

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB of any PIL image: 16/32-bit integer images are scaled by 1/257 (65535 → 255),
    float images from [0, 1]; palette images with transparency go through RGBA."""
    if image.mode in _SIXTEEN_BIT:
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        scale = 255.0 if np.nanmax(pixels, initial=0.0) <= 1.0 else 1.0
        pixels = np.nan_to_num(pixels * scale)
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_rgb(path: str, flags: str = "--skip-bad-images") -> Image.Image:
    """Open an image as 8-bit RGB, or raise :class:`BadImageError` naming the file.

    ``flags`` is how the caller's user turns skipping on (named in the message).
    """
    try:
        if is_special_file(path):  # opening a FIFO waits for a writer: never opened
            raise OSError("not a regular file (a FIFO, socket or device)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        reason = f"refusing a decompression bomb: {err}"
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as err:
        reason = str(err) or type(err).__name__
    hint = f", or pass {flags} to skip and count such files" if flags else ""
    raise BadImageError(
        f"cannot read image {display(path)}: {display(reason)}. Fix or remove the file{hint}"
    )


def _walk(folder: str) -> list[str]:
    """Files below ``folder``, sorted; symlinked folders are followed once (a loop is not)."""
    seen, files = set(), []
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        files += [os.path.join(root, name) for name in names]
    return sorted(files)


class SafeImageFolder(ImageFolder):
    """torchvision's ``ImageFolder`` whose bad images fail with their path, or are skipped.

    Class folders are found as torchvision does (sorted names); the files below them are
    walked without following a symlink loop, and file names that are not UTF-8 are kept (they
    are printed escaped).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable | None = None,
        skip_bad_images: bool = False,
        class_names: dict[str, str] | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise MissingDataError(f"image folder {display(root)} does not exist")
        super().__init__(str(root), transform=transform, loader=load_rgb)
        self.skip_bad_images = skip_bad_images
        self.folder_names = list(self.classes)
        if class_names:
            self.classes = [class_names.get(c, c) for c in self.classes]

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and e.name[0] != ".")
        if not classes:
            raise MissingDataError(
                f"image folder {display(directory)} has no class folders; expected one "
                "subfolder per class with the images inside"
            )
        return classes, {name: i for i, name in enumerate(classes)}

    @staticmethod
    def make_dataset(
        directory: str | Path,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        samples, empty = [], []
        for name, index in sorted(class_to_idx.items(), key=lambda item: item[1]):
            found = [
                (path, index)
                for path in _walk(os.path.join(directory, name))
                if has_file_allowed_extension(path, extensions or IMG_EXTENSIONS)
            ]
            if not found:
                empty.append(name)
            samples += found
        if empty and not allow_empty:
            raise DataError(
                f"class folders {', '.join(display(n) for n in empty)} in {display(directory)} "
                f"hold no images (allowed extensions: {', '.join(IMG_EXTENSIONS)})"
            )
        return samples

    def sample_name(self, index: int) -> str:
        return self.samples[index][0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            return super().__getitem__(index)
        except BadImageError:
            if self.skip_bad_images:
                return None
            raise
