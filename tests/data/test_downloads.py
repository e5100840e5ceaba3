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
