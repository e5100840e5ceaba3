"""Datasets for training and evaluation: one ``build_dataset(spec, split, resolution)``.

``spec`` is ``digits`` (scikit-learn's, embedded, the default), ``photos`` or ``photos:large``
(13 classes of patches cut from scikit-image's sample photographs, see
:mod:`mobilenets.data.photos`),
``cifar10``, ``imagenette`` (``imagenette:160px``, ``imagenette:320px`` or ``imagenette:full``),
or a path to an image folder with ``train/`` and ``val/`` inside.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from mobilenets.data.cache import InMemoryDataset
from mobilenets.data.digits import DIGITS_MEAN, DIGITS_STD, DigitsDataset
from mobilenets.data.downloads import IMAGENETTE_CLASSES, cifar10, prepare_imagenette
from mobilenets.data.folder import BadImageError, SafeImageFolder
from mobilenets.data.photos import prepare_photos
from mobilenets.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    train_transform,
)
from mobilenets.errors import ConfigError, DataError, MissingDataError, listed

__all__ = [
    "BadImageError",
    "DataSpec",
    "build_dataset",
    "check_classes",
    "default_data_root",
    "parse_spec",
    "sample_name",
]

SPLITS = ("train", "val")


@dataclass(frozen=True)
class DataSpec:
    kind: str  # digits | photos | cifar10 | imagenette | folder
    path: Path | None = None
    size: str = "160px"  # imagenette archive; photos: small or large

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (DIGITS_MEAN, DIGITS_STD) if self.kind == "digits" else (IMAGENET_MEAN, IMAGENET_STD)


def parse_spec(spec: str) -> DataSpec:
    """Parse a data spec; an unknown name that is not a folder is an error listing the choices."""
    if spec in ("digits", "cifar10"):
        return DataSpec(spec)
    if spec in ("photos", "photos:large"):
        return DataSpec("photos", size="large" if spec.endswith("large") else "small")
    if spec == "imagenette" or spec.startswith("imagenette:"):
        return DataSpec("imagenette", size=spec.partition(":")[2] or "160px")
    path = Path(spec).expanduser()
    if path.is_dir():
        if not any((path / s).is_dir() for s in SPLITS):
            raise MissingDataError(
                f"image folder {path} has no train/ or val/ subfolder; expected train/ and val/ "
                "inside (val/ alone is enough to evaluate), one folder per class in each"
            )
        return DataSpec("folder", path=path)
    raise ConfigError(
        f"unknown data spec {spec!r}: use digits, photos[:large], cifar10, "
        "imagenette[:160px|:320px|:full] or a folder with train/ and val/ inside"
    )


_WORDNET_ID = re.compile(r"n\d{8}")


def check_classes(
    expected: list[str], found: list[str], *, expected_from: str, found_in: str
) -> None:
    """Classes are matched by name, never by count: ``found`` (a data split's) must be
    ``expected`` (a model's or another split's), in the same order.

    One convention is accepted as it is in torchvision: 1,000 WordNet-ID folders
    (``n01440764``, ...) sorted are ImageNet's classes in the order of ImageNet weights.
    """
    if list(expected) == list(found):
        return
    imagenet_folders = len(found) == 1000 and all(_WORDNET_ID.fullmatch(c) for c in found)
    if len(expected) == 1000 and imagenet_folders and list(found) == sorted(found):
        return
    if not expected:
        raise DataError(
            f"{expected_from} stores no class names, so its outputs cannot be scored against "
            f"the classes of {found_in}"
        )
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if not missing and not extra:
        raise DataError(
            f"{found_in} has the classes of {expected_from} in another order; rename the "
            "folders so that they sort in the same order"
        )
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({listed(missing, 8)})")
    if extra:
        parts.append(f"{len(extra)} unexpected ({listed(extra, 8)})")
    raise DataError(
        f"the classes of {found_in} do not match those of {expected_from} "
        f"({len(expected)} classes): " + "; ".join(parts)
    )


def default_data_root() -> Path:
    """Where downloads go: ``$MOBILENETS_DATA`` or ``~/.cache/mobilenets/data``."""
    return Path(os.environ.get("MOBILENETS_DATA", Path.home() / ".cache" / "mobilenets" / "data"))


def build_dataset(
    spec: str | DataSpec,
    split: str,
    resolution: int,
    *,
    root: str | Path | None = None,
    augment: bool | None = None,
    cache_in_memory: bool = False,
    skip_bad_images: bool = False,
    preprocess: Callable | None = None,
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> Dataset:
    """The ``split`` ("train" or "val") of a data spec at ``resolution`` px, with its transforms.

    Every dataset has ``classes`` (names); training augmentation is on for "train" unless
    ``augment`` says otherwise. ``preprocess`` replaces the evaluation preprocessing (a saved
    network's ``info.eval_transform()``); the digits build their own (8×8 arrays upsampled).
    ``mean_std`` replaces the data's normalisation (a fine-tuned network keeps its weights'),
    except for the digits, which are normalised by their own statistics.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    augment = (split == "train") if augment is None else augment
    if spec.kind == "digits":
        return DigitsDataset(split, resolution, augment=augment)
    mean, std = mean_std or spec.mean_std
    if augment:
        transform = train_transform(resolution, mean, std)
    else:
        transform = preprocess or eval_transform(resolution, mean, std)
    root = Path(root) if root is not None else default_data_root()
    if spec.kind == "cifar10":
        return cifar10(root / "cifar10", train=split == "train", transform=transform)
    if spec.kind == "imagenette":
        folder, names = prepare_imagenette(root / "imagenette", spec.size), IMAGENETTE_CLASSES
    elif spec.kind == "photos":
        folder, names = prepare_photos(root, spec.size), None
    else:
        folder, names = spec.path, None
        if not (folder / split).is_dir():
            raise MissingDataError(f"image folder {folder} has no {split}/ subfolder")
    dataset = SafeImageFolder(folder / split, transform, skip_bad_images, class_names=names)
    if cache_in_memory:  # the same transforms run on the cached uint8 tensors
        return InMemoryDataset(dataset, resolution, transform)
    return dataset


def sample_name(dataset: Dataset, index: int) -> str:
    """A readable identifier of one sample: its path, or ``dataset/index``."""
    if hasattr(dataset, "sample_name"):
        return dataset.sample_name(index)
    return f"{type(dataset).__name__.lower()}/{index}"
