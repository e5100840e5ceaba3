"""Box data: the embedded trees, VOC and COCO box folders, COCO AP against hand counts, and the
bad inputs (each one line)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _voc import write_voc
from PIL import Image

from mobilenets.data.detection import (
    TREE_TILE,
    build_detection_dataset,
    check_boxes,
    coco_metrics,
    read_trees,
    tile_boxes,
)
from mobilenets.errors import DataError


def test_the_trees_are_deepforests_real_boxes() -> None:
    """853 hand-drawn crowns on the two Yellowstone images (574 + 279), 98 on the two held-out
    sites (OSBS_029: 61, SOAP_061: 37)."""
    train, val = read_trees("train"), read_trees("val")
    assert [len(a.boxes) for a in train] == [574, 279]
    assert [len(a.boxes) for a in val] == [61, 37]
    assert {int(v) for a in train + val for v in a.labels} == {1}


def test_the_val_tiles_hold_the_held_out_trees() -> None:
    """The two 400×400 held-out images are four 200-px tiles each; 97 of the 98 trees are at
    least half inside one tile (the boxes cut by a tile edge are clipped)."""
    val = build_detection_dataset("trees", "val", 320)
    assert len(val) == 8
    image, target = val[0]
    assert image.shape == (3, 320, 320) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert sum(len(val[i][1]["boxes"]) for i in range(len(val))) == 97
    assert target["boxes"].min() >= 0 and target["boxes"].max() <= 320


def test_tiles_keep_boxes_at_least_half_inside() -> None:
    boxes = np.array([[190, 10, 230, 50], [150, 10, 210, 50], [10, 10, 20, 20]], np.float32)
    labels = np.array([1, 1, 1])
    kept, kept_labels = tile_boxes(boxes, labels, 0, 0, TREE_TILE)
    # the first is 25% inside: dropped; the second 83%: clipped; the third whole
    assert kept.tolist() == [[150, 10, 200, 50], [10, 10, 20, 20]]
    assert kept_labels.tolist() == [1, 1]


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([10, 10, 10, 20], "has no area or is inverted"),
        ([30, 10, 20, 20], "has no area or is inverted"),
        ([-5, 10, 20, 20], "lies outside the 64×48 image"),
        ([10, 10, 20, 49], "lies outside the 64×48 image"),
    ],
)
def test_bad_boxes_are_one_line(box, message) -> None:
    with pytest.raises(DataError, match=message):
        check_boxes(np.array([box], np.float32), (64, 48), "img.png")


def _voc(folder, name, objects, size=(64, 48)) -> None:
    write_voc(folder, name, objects, np.full((size[1], size[0], 3), 90, np.uint8))


def test_a_voc_folder_reads_its_boxes(tmp_path) -> None:
    (tmp_path / "classes.txt").write_text("car\nperson\n")
    _voc(tmp_path / "val", "a", [("person", (4, 6, 30, 40)), ("car", (32, 8, 60, 44))])
    _voc(tmp_path / "val", "empty", [])  # an image with no boxes: a negative, allowed
    data = build_detection_dataset(str(tmp_path), "val", 128)
    assert data.classes == ["__background__", "car", "person"]
    image, target = data[0]
    assert image.shape == (3, 128, 128)
    assert target["labels"].tolist() == [2, 1]
    # resized from 64×48 to 128×128: x doubles, y × 8/3
    torch.testing.assert_close(target["boxes"][0], torch.tensor([8.0, 16.0, 60.0, 320 / 3]))
    assert len(data[1][1]["boxes"]) == 0


def test_a_class_not_in_the_names_is_one_line(tmp_path) -> None:
    (tmp_path / "classes.txt").write_text("car\nperson\n")
    _voc(tmp_path / "val", "a", [("bicycle", (4, 6, 30, 40))])
    with pytest.raises(DataError, match="class 'bicycle' is not among the classes"):
        build_detection_dataset(str(tmp_path), "val", 128)[0]


def test_a_coco_file_naming_missing_images_is_one_line(tmp_path) -> None:
    folder = tmp_path / "val"
    (folder / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "images" / "here.png")
    coco = {
        "images": [{"id": 1, "file_name": "here.png"}, {"id": 2, "file_name": "gone.png"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 7,
                "bbox": [2, 2, 10, 10],
                "area": 100,
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 7, "name": "tree"}],
    }
    (folder / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"names images that are not in .*gone\.png"):
        build_detection_dataset(str(tmp_path), "val", 64)
    coco["images"].pop()
    (folder / "annotations.json").write_text(json.dumps(coco))
    data = build_detection_dataset(str(tmp_path), "val", 64)
    assert data.classes == ["__background__", "tree"]
    assert data[0][1]["labels"].tolist() == [1]


def test_coco_ap_against_hand_counts() -> None:
    truth = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]),
            "labels": torch.tensor([1, 1]),
        }
    ]
    both = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 42]]),
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([1, 1]),
        }
    ]
    # the second box has IoU 400/440 = 0.91: a hit at 9 of the 10 thresholds; at 0.95 only the
    # first is found, recall 0.5: AP = 51/101 on COCO's 101 recall points
    metrics = coco_metrics(both, truth, 2)
    assert metrics["ap50"] == metrics["ap75"] == 100.0
    assert metrics["map"] == pytest.approx((9 * 100 + 100 * 51 / 101) / 10)
    one = [
        {"boxes": both[0]["boxes"][:1], "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    ]
    assert coco_metrics(one, truth, 2)["ap50"] == pytest.approx(100 * 51 / 101)
    assert (
        coco_metrics(
            one, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], 2
        )["map"]
        == 0.0
    )
