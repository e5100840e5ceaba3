"""Segmentation data: images with index masks (one class per pixel, 255 = ignore), joint
geometric transforms with torchvision's ``tv_tensors.Mask`` and ``transforms.v2``.

- ``nuclei`` (embedded, no download): the fluorescence image (512×512) with its 125
  hand-labelled nuclei that the ``stardist`` wheel ships (DSB 2018; install it ``--no-deps``,
  see ``requirements-weights.txt``). Training crops come from the top three quarters of the
  image, validation tiles (128×128) from the bottom quarter: disjoint parts.
- A folder: ``train/`` and ``val/``, each with ``images/`` and ``masks/`` (a PNG of the same
  name and size per image, pixel values the class index or 255), and ``classes.txt`` (one
  class name per line) beside them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from mobilenets.data.downloads import VOC_CLASSES, voc2012
from mobilenets.errors import DataError, MissingDataError, display, listed

IGNORE_INDEX = 255
NUCLEI_CLASSES = ("background", "nucleus")
NUCLEI_VAL_ROWS = 128  # the bottom 128 rows are the held-out part
NUCLEI_TILE = 128
NUCLEI_TRAIN_CROPS = 128  # random crops per training epoch
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class RandomScale(v2.Transform):
    """Resize image and mask together by one random factor of their own size (torchvision's
    reference scales by 0.5–2× of a base size; here the base is each image's)."""

    def __init__(self, low: float = 0.5, high: float = 2.0) -> None:
        super().__init__()
        self.low, self.high = low, high

    def make_params(self, flat_inputs: list) -> dict:
        height, width = next(
            v2.functional.get_size(x) for x in flat_inputs if isinstance(x, tv_tensors.Image)
        )
        factor = float(torch.empty(()).uniform_(self.low, self.high))
        return {"size": [max(1, round(height * factor)), max(1, round(width * factor))]}

    def transform(self, inpt: object, params: dict) -> object:
        return self._call_kernel(v2.functional.resize, inpt, params["size"], antialias=True)


def joint_train_transform(
    resolution: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> v2.Compose:
    """torchvision's segmentation reference, at a fixed crop: random scale (0.5–2× of the
    image's size; masks by nearest neighbour), flip, random crop padded with 0 (image) and 255
    (mask), to float, normalize."""
    return v2.Compose(
        [
            RandomScale(0.5, 2.0),
            v2.RandomHorizontalFlip(),
            v2.RandomCrop(
                resolution,
                pad_if_needed=True,
                fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX},
            ),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def joint_eval_transform(mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """The whole image, to float, normalized (masks untouched)."""
    return v2.Compose(
        [
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def _nuclei_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("stardist")  # located, not imported (it needs TensorFlow)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(
            "the nuclei data ship in the stardist wheel: pip install --no-deps "
            "-r requirements-weights.txt (or pip install --no-deps stardist==0.9.2)"
        )
    folder = Path(spec.submodule_search_locations[0]) / "data" / "images"
    image, mask = folder / "img2d.tif", folder / "mask2d.tif"
    for path in (image, mask):
        if not path.is_file():
            raise MissingDataError(f"{display(path)} is missing from the stardist wheel")
    return image, mask


def read_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """The fluorescence image (uint8, 3 equal channels, H×W×3) and its 0/1 mask."""
    import tifffile

    image_path, mask_path = _nuclei_files()
    image, labels = tifffile.imread(image_path), tifffile.imread(mask_path)
    if image.shape != (512, 512) or labels.shape != image.shape:
        raise DataError(
            f"{display(image_path)}: expected a 512×512 image and mask, got {image.shape} "
            f"and {labels.shape}"
        )
    image = np.clip(image, 0, 255).astype(np.uint8)  # intensities 0–235
    return np.repeat(image[:, :, None], 3, axis=2), (labels > 0).astype(np.uint8)


class NucleiDataset(Dataset):
    """``nuclei``: random crops of the top 384 rows (training, ``crops``), else the 128×128
    tiles of its part: twelve of the top 384 rows (train), four of the bottom 128 (val)."""

    classes: ClassVar[list[str]] = list(NUCLEI_CLASSES)
    task = "segmentation"

    def __init__(
        self, split: str, resolution: int, transform: v2.Transform, crops: bool = False
    ) -> None:
        image, mask = read_nuclei()
        cut = image.shape[0] - NUCLEI_VAL_ROWS
        rows = slice(0, cut) if split == "train" else slice(cut, None)
        self.image = tv_tensors.Image(torch.from_numpy(image[rows]).permute(2, 0, 1))
        self.mask = tv_tensors.Mask(torch.from_numpy(mask[rows]).long())
        self.split, self.transform, self.crops = split, transform, crops
        height, width = self.mask.shape
        self.tiles = [
            (y, x) for y in range(0, height, NUCLEI_TILE) for x in range(0, width, NUCLEI_TILE)
        ]

    def __len__(self) -> int:
        return NUCLEI_TRAIN_CROPS if self.crops else len(self.tiles)

    def sample_name(self, index: int) -> str:
        return f"nuclei/{self.split}/{index}"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.crops:  # the transform crops at random
            image, mask = self.image, self.mask
        else:
            top, left = self.tiles[index]
            window = (..., slice(top, top + NUCLEI_TILE), slice(left, left + NUCLEI_TILE))
            image = tv_tensors.Image(self.image[window])
            mask = tv_tensors.Mask(self.mask[window])
        image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def nuclei_mean_std() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The training part's intensity mean and std (on the 0–1 scale), per channel."""
    image, _ = read_nuclei()
    part = image[: image.shape[0] - NUCLEI_VAL_ROWS, :, 0].astype(np.float64) / 255
    return (float(part.mean()),) * 3, (float(part.std()),) * 3


def read_classes(
    root: Path, fewest: int = 2, most: int = IGNORE_INDEX, kind: str = "segmentation"
) -> list[str]:
    """The class names of a folder's ``classes.txt``, one per line (``fewest`` to ``most``)."""
    path = root / "classes.txt"
    order = {
        "segmentation": "in the order of the mask values 0, 1, 2, ...",
        "detection": "the background not listed (it is class 0)",
    }[kind]
    if not path.is_file():
        raise MissingDataError(
            f"{display(root)} has no classes.txt: a {kind} folder names its classes, one per "
            f"line, {order}"
        )
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (UnicodeDecodeError, OSError) as err:
        raise DataError(f"{display(path)}: not a UTF-8 text file ({err})") from None
    names = [n for n in names if n]
    if not fewest <= len(names) <= most:
        raise DataError(
            f"{display(path)} names {len(names)} classes; a {kind} folder needs {fewest} to {most}"
        )
    return names


class SegmentationFolder(Dataset):
    """``split/images/NAME.*`` with ``split/masks/NAME.png`` (class index per pixel, 255 =
    ignore). Each pair is checked when read: same size, values within the classes."""

    task = "segmentation"

    def __init__(self, root: str | Path, split: str, transform: v2.Transform) -> None:
        root = Path(root)
        self.classes = read_classes(root)
        images, masks = root / split / "images", root / split / "masks"
        for folder in (images, masks):
            if not folder.is_dir():
                raise MissingDataError(
                    f"segmentation folder {display(root)} has no {split}/{folder.name}/; "
                    f"expected {split}/images/ and {split}/masks/ (a PNG per image, same name)"
                )
        self.images = sorted(
            p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        missing = [p.name for p in self.images if not (masks / f"{p.stem}.png").is_file()]
        if missing:
            raise MissingDataError(
                f"{display(masks)} lacks the masks of {len(missing)} image(s) "
                f"({listed(missing, 5)}); each image needs a PNG mask of the same name"
            )
        if not self.images:
            raise MissingDataError(f"{display(images)} holds no images")
        self.masks = [masks / f"{p.stem}.png" for p in self.images]
        self.transform, self.split = transform, split

    def __len__(self) -> int:
        return len(self.images)

    def sample_name(self, index: int) -> str:
        return str(self.images[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.images[index], self.masks[index]
        try:
            with Image.open(image_path) as img:
                image = np.asarray(img.convert("RGB"))
            with Image.open(mask_path) as img:
                if img.mode not in ("L", "P", "I", "I;16"):
                    raise DataError(
                        f"{display(mask_path)}: a mask must be a one-channel PNG of class "
                        f"indices, got mode {img.mode}"
                    )
                mask = np.asarray(img).astype(np.int64)
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read {display(image_path)} or its mask: {error}") from None
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{display(mask_path)} is {mask.shape[1]}×{mask.shape[0]} px but its image is "
                f"{image.shape[1]}×{image.shape[0]}: a mask must have its image's size"
            )
        bad = np.unique(mask[(mask != IGNORE_INDEX) & ((mask < 0) | (mask >= len(self.classes)))])
        if bad.size:
            raise DataError(
                f"{display(mask_path)} holds values {listed([str(v) for v in bad], 5)} outside "
                f"the {len(self.classes)} classes (0–{len(self.classes) - 1}, or 255 = ignore)"
            )
        image = tv_tensors.Image(torch.from_numpy(image.copy()).permute(2, 0, 1))
        result = self.transform(image, tv_tensors.Mask(torch.from_numpy(mask)))
        return result[0].as_subclass(torch.Tensor), result[1].as_subclass(torch.Tensor)


class VOCDataset(Dataset):
    """torchvision's ``VOCSegmentation`` with the joint ``tv_tensors`` transforms: image and
    index mask (255 on object boundaries, ignored) as tensors."""

    classes: ClassVar[list[str]] = list(VOC_CLASSES)
    task = "segmentation"

    def __init__(self, root: Path, split: str, transform: v2.Transform) -> None:
        self.transform = transform
        self.voc = voc2012(root, split, self._joint)

    def _joint(self, image: Image.Image, mask: Image.Image) -> tuple:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
        labels = torch.from_numpy(np.asarray(mask).astype(np.int64))
        return self.transform(tv_tensors.Image(pixels), tv_tensors.Mask(labels))

    def __len__(self) -> int:
        return len(self.voc)

    def sample_name(self, index: int) -> str:
        return self.voc.images[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.voc[index]
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


class CityscapesDataset(Dataset):
    """torchvision's ``Cityscapes`` (fine annotations, from its folder or its two zip files;
    the data need a login, so nothing is downloaded): the 34 label ids mapped to the 19
    training classes of the benchmark (the V3 paper's Table 7), every other id 255 (ignored)."""

    task = "segmentation"

    def __init__(self, root: Path, split: str, transform: v2.Transform) -> None:
        from torchvision.datasets import Cityscapes

        trained = [c for c in Cityscapes.classes if c.train_id not in (255, -1)]
        self.classes = [c.name for c in sorted(trained, key=lambda c: c.train_id)]
        self.train_ids = torch.full((256,), IGNORE_INDEX, dtype=torch.long)
        for c in trained:
            self.train_ids[c.id] = c.train_id
        self.transform = transform
        try:
            self.cityscapes = Cityscapes(
                str(root), split=split, mode="fine", target_type="semantic"
            )
        except (RuntimeError, ValueError) as err:
            raise MissingDataError(
                f"Cityscapes not found in {display(root)}: put leftImg8bit/ and gtFine/ there "
                "(or leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, from "
                f"cityscapes-dataset.com); torchvision says: {display(err)[:120]}"
            ) from None

    def __len__(self) -> int:
        return len(self.cityscapes)

    def sample_name(self, index: int) -> str:
        return self.cityscapes.images[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.cityscapes[index]
        pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
        ids = torch.from_numpy(np.asarray(labels).astype(np.int64)).clamp(0, 255)
        image, mask = self.transform(tv_tensors.Image(pixels), tv_tensors.Mask(self.train_ids[ids]))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def build_segmentation_dataset(
    spec: str,
    split: str,
    resolution: int,
    *,
    augment: bool | None = None,
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    root: str | Path | None = None,
) -> Dataset:
    """The ``split`` of ``nuclei``, ``voc`` (PASCAL VOC 2012, downloaded once into ``root``,
    default ``$MOBILENETS_DATA/voc``), ``cityscapes`` (its folder in ``root``, default
    ``$MOBILENETS_DATA/cityscapes``) or a segmentation folder, training crops of ``resolution`` px
    (evaluation: whole images or tiles)."""
    augment = (split == "train") if augment is None else augment
    mean, std = mean_std or (nuclei_mean_std() if spec == "nuclei" else _imagenet())
    if augment:
        transform = joint_train_transform(resolution, mean, std)
    else:
        transform = joint_eval_transform(mean, std)
    if spec == "nuclei":
        return NucleiDataset(split, resolution, transform, crops=augment)
    if spec in ("voc", "cityscapes"):
        from mobilenets.data import default_data_root

        folder = Path(root) if root else default_data_root() / spec
        kind = VOCDataset if spec == "voc" else CityscapesDataset
        return kind(folder, split, transform)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise MissingDataError(
            f"unknown segmentation data {display(spec)}: use nuclei, voc, cityscapes or a "
            "folder with classes.txt and train/ and val/ (images/ and masks/ in each)"
        )
    return SegmentationFolder(path, split, transform)


def _imagenet() -> tuple[tuple[float, ...], tuple[float, ...]]:
    from mobilenets.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return IMAGENET_MEAN, IMAGENET_STD


def collate_padded(samples: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Collate ``(image, mask, index)`` samples of any sizes: images padded with 0 and masks
    with 255 to the largest (torchvision's reference ``cat_list``); ``None`` samples skipped."""
    good = [s for s in samples if s is not None]
    skipped = len(samples) - len(good)
    if not good:
        empty = torch.empty(0, dtype=torch.long)
        return torch.empty(0), empty, empty, skipped
    height = max(s[0].shape[-2] for s in good)
    width = max(s[0].shape[-1] for s in good)
    images = torch.zeros(len(good), good[0][0].shape[0], height, width)
    masks = torch.full((len(good), height, width), IGNORE_INDEX, dtype=torch.long)
    for i, (image, mask, _) in enumerate(good):
        images[i, :, : image.shape[-2], : image.shape[-1]] = image
        masks[i, : mask.shape[-2], : mask.shape[-1]] = mask
    indices = torch.tensor([s[2] for s in good])
    return images, masks, indices, skipped


def iou_per_class(confusion: torch.Tensor) -> list[float]:
    """IoU (%) of each class from a ``[true, predicted]`` pixel-count matrix; ``nan`` for a
    class absent from both truth and prediction."""
    matrix = confusion.double()
    true_positive = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - true_positive
    return [
        100 * float(tp / u) if u > 0 else float("nan")
        for tp, u in zip(true_positive, union, strict=True)
    ]


def mean_iou(confusion: torch.Tensor) -> float:
    """mIoU (%): the mean over the classes present in truth or prediction (as torchmetrics'
    ``JaccardIndex`` and torchvision's reference leave absent classes out)."""
    present = [v for v in iou_per_class(confusion) if v == v]
    return sum(present) / len(present) if present else 0.0


def confusion_counts(
    predicted: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """``[true, predicted]`` pixel counts (int64) of class maps, over the pixels not marked 255."""
    valid = targets != IGNORE_INDEX
    index = targets[valid].long() * num_classes + predicted[valid].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


#: The named segmentation data sets (``build_segmentation_dataset`` reads each).
SEGMENTATION_DATA = ("nuclei", "voc", "cityscapes")


def is_segmentation_data(data: str) -> bool:
    """A named segmentation data set, or a segmentation folder (it holds ``classes.txt``)."""
    return data in SEGMENTATION_DATA or (Path(data).expanduser() / "classes.txt").is_file()
