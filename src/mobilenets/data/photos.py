"""``photos``: a small real-image classification task cut from scikit-image's sample photographs.

Each class is one photograph; its images are square patches cut at random positions and sizes:
64–128 px (``photos``, for training at small resolutions) or 192–320 px where the photograph
allows (``photos:large``, crops an ImageNet network sees at 224 px without upscaling much).
Training patches come from the left 65% (large: 50%) of each photograph and validation patches
from the rest, so no pixel is in both splits. Real camera images with real textures and colours, no
download (the photographs ship with scikit-image): the embedded task for fine-tuning from
ImageNet weights, distillation and int8 calibration, where digits are too unlike photographs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mobilenets.errors import MissingDataError
from mobilenets.fileio import write_text_atomic

#: scikit-image's bundled photographs (colour first, then greyscale), one class each.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "colorwheel",
    "camera",
    "brick",
    "grass",
    "gravel",
    "coins",
)
#: the share of each photograph's width, from the left, that training patches come from
TRAIN_FRACTION = {"small": 0.65, "large": 0.5}
PATCH_SIDES = {"small": (64, 128), "large": (192, 320)}
PER_PHOTO = {"train": 40, "val": 20}
COMPLETE = ".complete"
#: zlib level of the patches' PNGs: the same pixels as the default 6; measured on the VNNI Xeon
#: (a thread), the small set builds in 1.15 s instead of 2.0 and the large in 3.35 s instead
#: of 9.65, for files 3–6% larger
PNG_LEVEL = 1


def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise MissingDataError(
            "the photos data set is cut from scikit-image's sample photographs: "
            "pip install scikit-image"
        ) from None
    pixels = getattr(skimage.data, name)()
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels[..., :3]


def _patches(
    pixels: np.ndarray, split: str, count: int, size: str, rng: np.random.Generator
) -> list:
    height, width = pixels.shape[:2]
    sides = PATCH_SIDES[size]
    cut = int(width * TRAIN_FRACTION[size])
    left, right = (0, cut) if split == "train" else (cut, width)
    largest = min(sides[1], right - left, height)
    out = []
    for _ in range(count):
        side = int(rng.integers(min(sides[0], largest), largest + 1))
        x = int(rng.integers(left, right - side + 1))
        y = int(rng.integers(0, height - side + 1))
        out.append(pixels[y : y + side, x : x + side])
    return out


def prepare_photos(root: Path, size: str = "small", seed: int = 0) -> Path:
    """Write the photos data set once under ``root`` (an image folder with train/ and val/),
    built in a temporary folder and moved into place, so an interrupted build is redone."""
    folder = root / f"photos-{size}-seed{seed}"
    if (folder / COMPLETE).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = {name: _photo(name) for name in PHOTOS}  # decoded once, cut for both splits
    with tempfile.TemporaryDirectory(dir=root, prefix=".photos-") as tmp:
        for split, count in PER_PHOTO.items():
            for name, pixels in photos.items():
                (Path(tmp) / split / name).mkdir(parents=True)
                for i, patch in enumerate(_patches(pixels, split, count, size, rng)):
                    path = Path(tmp) / split / name / f"{i:03d}.png"
                    Image.fromarray(patch).save(path, compress_level=PNG_LEVEL)
        write_text_atomic(Path(tmp) / COMPLETE, "scikit-image sample photographs\n")
        if folder.exists():
            shutil.rmtree(folder)
        Path(tmp).rename(folder)
        Path(tmp).mkdir()  # for TemporaryDirectory's cleanup
    return folder
