"""CIFAR-10 and PASCAL VOC 2012 (torchvision's own datasets and downloads) and Imagenette (the
fast.ai archives).

Imagenette is downloaded once, checked against its md5, extracted, marked complete (an
interrupted extraction is redone), then read as an image folder.
"""

from __future__ import annotations

import contextlib
import tarfile
import urllib.error
from collections.abc import Iterator
from pathlib import Path

from torchvision.datasets import CIFAR10, VOCSegmentation
from torchvision.datasets import voc as torchvision_voc
from torchvision.datasets.utils import download_and_extract_archive

from mobilenets.errors import DataError, display
from mobilenets.fileio import write_text_atomic

IMAGENETTE_ARCHIVES = {  # size: (url, md5) — the checksums torchvision's Imagenette uses
    "full": (
        "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
        "fe2fc210e6bb7c5664d602c3cd71e612",
    ),
    "320px": (
        "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
        "3df6f0d01a2c9592104656642f5e78a3",
    ),
    "160px": (
        "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
        "e793b78cc4c9e9a4ccc0c1155377a412",
    ),
}
IMAGENETTE_CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}


def prepare_imagenette(root: str | Path, size: str = "160px") -> Path:
    """Download (once), verify and extract Imagenette; return the folder with train/ and val/."""
    if size not in IMAGENETTE_ARCHIVES:
        raise DataError(f"imagenette size must be one of {list(IMAGENETTE_ARCHIVES)}, got {size!r}")
    url, md5 = IMAGENETTE_ARCHIVES[size]
    root = Path(root)
    folder = root / Path(url).name.removesuffix(".tgz")
    marker = root / f".{folder.name}.complete"
    if not marker.exists():
        with _download_errors(url, root):
            download_and_extract_archive(url, str(root), md5=md5)
        if not (folder / "train").is_dir() or not (folder / "val").is_dir():
            raise DataError(f"archive {url} did not contain {folder.name}/train and /val")
        write_text_atomic(marker, md5)
    return folder


def cifar10(root: str | Path, train: bool, transform: object) -> CIFAR10:
    """torchvision's CIFAR-10, downloaded (and md5-checked) on first use."""
    with _download_errors(CIFAR10.url, root):
        return CIFAR10(str(root), train=train, transform=transform, download=True)


@contextlib.contextmanager
def _download_errors(url: str, root: str | Path) -> Iterator[None]:
    """A failed or corrupt download is one clear error saying where the file would go."""
    try:
        yield
    except (urllib.error.URLError, RuntimeError, tarfile.TarError, EOFError) as err:
        reason = str(getattr(err, "reason", None) or err).rstrip(".")
        raise DataError(
            f"could not download {url} into {display(root)}: {display(reason)}. Without a "
            f"network, download the archive elsewhere and place it in {display(root)}"
        ) from err


#: PASCAL VOC's 21 segmentation classes, in the order of the mask values (255: boundaries).
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc2012(root: str | Path, split: str, transforms: object) -> VOCSegmentation:
    """torchvision's VOC 2012 segmentation (``train`` or ``val``): its archive downloaded and
    md5-checked by torchvision on first use, extracted once (a marker, as Imagenette's)."""
    entry = torchvision_voc.DATASET_YEAR_DICT["2012"]
    root = Path(root)
    marker = root / ".VOC2012.complete"
    download = not marker.exists()
    with _download_errors(entry["url"], root):
        dataset = VOCSegmentation(
            str(root), year="2012", image_set=split, download=download, transforms=transforms
        )
    if download:
        write_text_atomic(marker, entry["md5"])
    return dataset
