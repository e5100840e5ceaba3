"""The real download code for Imagenette and CIFAR-10, served from archives the tests build."""

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import CIFAR10

from mobilenets.data import build_dataset, downloads
from mobilenets.errors import DataError


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def imagenette_archive(tmp_path, monkeypatch, serve_directory):
    archive = tmp_path / "serve" / "imagenette2-160.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "val"):
            for wnid in ("n01440764", "n03888257"):
                for i in range(2):
                    buffer = io.BytesIO()
                    Image.new("RGB", (50, 40), (i * 90, 30, 200)).save(buffer, "JPEG")
                    _add(tar, f"imagenette2-160/{split}/{wnid}/{i}.JPEG", buffer.getvalue())
    url = serve_directory(archive.parent)(archive.name)
    monkeypatch.setitem(downloads.IMAGENETTE_ARCHIVES, "160px", (url, _md5(archive)))
    return archive


def test_imagenette_downloads_checks_extracts_once(imagenette_archive, tmp_path) -> None:
    root = tmp_path / "data"
    ds = build_dataset("imagenette", "val", 32, root=root)
    assert ds.classes == ["tench", "parachute"] and len(ds) == 4
    assert ds[0][0].shape == (3, 32, 32)
    assert (root / "imagenette" / ".imagenette2-160.complete").exists()
    imagenette_archive.unlink()  # a second use must not download again
    assert len(build_dataset("imagenette:160px", "train", 32, root=root)) == 4


def test_imagenette_checksum_mismatch_is_an_error(imagenette_archive, tmp_path, monkeypatch):
    url, _ = downloads.IMAGENETTE_ARCHIVES["160px"]
    monkeypatch.setitem(downloads.IMAGENETTE_ARCHIVES, "160px", (url, "0" * 32))
    with pytest.raises(DataError, match=r"could not download .*imagenette2-160\.tgz .*corrupted"):
        build_dataset("imagenette", "val", 32, root=tmp_path / "data")


def test_imagenette_unknown_size() -> None:
    with pytest.raises(ValueError, match=r"imagenette size must be one of \['full', '320px'"):
        downloads.prepare_imagenette("/nonexistent", "64px")


def test_cifar10_uses_torchvisions_download(tmp_path, monkeypatch, serve_directory) -> None:
    rng = np.random.default_rng(0)
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (batches / name).write_bytes(pickle.dumps(data))
    label_names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    (batches / "batches.meta").write_bytes(pickle.dumps({"label_names": label_names}))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    checksums = {name: _md5(batches / name) for name in names}
    monkeypatch.setattr(CIFAR10, "url", serve_directory(tmp_path)(archive.name))
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(archive))
    monkeypatch.setattr(CIFAR10, "train_list", [[n, checksums[n]] for n in names[:5]])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", checksums["test_batch"]]])
    monkeypatch.setitem(CIFAR10.meta, "md5", _md5(batches / "batches.meta"))
    ds = build_dataset("cifar10", "train", 32, root=tmp_path / "data")
    assert len(ds) == 20 and ds.classes[9] == "truck"
    assert ds[0][0].shape == (3, 32, 32)


@pytest.fixture
def voc_archive(tmp_path, monkeypatch, serve_directory):
    """A VOC 2012-shaped tar (two images per split, palette masks with 0, 15 and 255) served
    over HTTP in place of the real 2 GB archive, with its own md5."""
    from torchvision.datasets import voc

    archive = tmp_path / "serve" / "VOCtrainval_11-May-2012.tar"
    archive.parent.mkdir()
    base = "VOCdevkit/VOC2012"
    with tarfile.open(archive, "w") as tar:
        for split in ("train", "val"):
            names = [f"2012_{split}_{i}" for i in range(2)]
            _add(tar, f"{base}/ImageSets/Segmentation/{split}.txt", "\n".join(names).encode())
            for name in names:
                buffer = io.BytesIO()
                Image.new("RGB", (48, 40), (200, 30, 60)).save(buffer, "JPEG")
                _add(tar, f"{base}/JPEGImages/{name}.jpg", buffer.getvalue())
                mask = np.zeros((40, 48), np.uint8)
                mask[10:30, 10:30], mask[10, 10:30] = 15, 255  # a person, its boundary
                png = Image.fromarray(mask, mode="P")
                png.putpalette([0, 0, 0] * 256)
                buffer = io.BytesIO()
                png.save(buffer, "PNG")
                _add(tar, f"{base}/SegmentationClass/{name}.png", buffer.getvalue())
    entry = {**voc.DATASET_YEAR_DICT["2012"], "md5": _md5(archive)}
    entry["url"] = serve_directory(archive.parent)(archive.name)
    monkeypatch.setitem(voc.DATASET_YEAR_DICT, "2012", entry)
    return archive


def test_voc_downloads_through_torchvision_checks_and_extracts_once(voc_archive, tmp_path):
    from mobilenets.data.segmentation import build_segmentation_dataset

    root = tmp_path / "voc"
    val = build_segmentation_dataset("voc", "val", 32, root=root)
    assert len(val) == 2 and val.classes[15] == "person" and len(val.classes) == 21
    image, mask = val[0]
    assert image.shape == (3, 40, 48) and set(mask.unique().tolist()) == {0, 15, 255}
    voc_archive.unlink()  # a second use must not download (nor extract) again
    train = build_segmentation_dataset("voc", "train", 32, root=root)
    assert train[0][0].shape == (3, 32, 32)  # a training crop


def test_voc_checksum_mismatch_is_one_clear_error(voc_archive, tmp_path, monkeypatch):
    from torchvision.datasets import voc

    from mobilenets.data.segmentation import build_segmentation_dataset

    monkeypatch.setitem(
        voc.DATASET_YEAR_DICT, "2012", {**voc.DATASET_YEAR_DICT["2012"], "md5": "0" * 32}
    )
    with pytest.raises(
        DataError, match=r"could not download .*VOCtrainval_11-May-2012\.tar .*corrupted"
    ):
        build_segmentation_dataset("voc", "val", 32, root=tmp_path / "voc")


def test_cityscapes_from_its_folder_maps_label_ids_to_the_19_classes(tmp_path) -> None:
    """torchvision's Cityscapes layout (leftImg8bit/, gtFine/ *_labelIds.png): ids 7 (road)
    and 26 (car) become classes 0 and 13, ids outside the benchmark (0, 4) become 255."""
    from mobilenets.data.segmentation import build_segmentation_dataset
    from mobilenets.errors import MissingDataError

    city = "aachen"
    for split in ("train", "val"):
        images = tmp_path / "leftImg8bit" / split / city
        targets = tmp_path / "gtFine" / split / city
        images.mkdir(parents=True)
        targets.mkdir(parents=True)
        stem = f"{city}_000000_000019"
        Image.new("RGB", (64, 32), (90, 90, 90)).save(images / f"{stem}_leftImg8bit.png")
        ids = np.full((32, 64), 7, np.uint8)
        ids[:, 32:], ids[0], ids[1] = 26, 0, 4
        Image.fromarray(ids).save(targets / f"{stem}_gtFine_labelIds.png")
    val = build_segmentation_dataset("cityscapes", "val", 32, root=tmp_path)
    assert len(val.classes) == 19 and val.classes[0] == "road" and val.classes[13] == "car"
    image, mask = val[0]
    assert image.shape == (3, 32, 64)
    assert mask[5, 0] == 0 and mask[5, 40] == 13 and mask[0, 0] == 255 and mask[1, 50] == 255
    with pytest.raises(MissingDataError, match=r"Cityscapes not found in .*: put leftImg8bit/"):
        build_segmentation_dataset("cityscapes", "val", 32, root=tmp_path / "empty")
