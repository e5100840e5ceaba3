"""Datasets: digits split, image folders, bad images, the memory cache, spec errors."""

import collections

import pytest
import torch

from mobilenets.data import BadImageError, build_dataset, parse_spec
from mobilenets.data import cache as cache_module
from mobilenets.training.engine import batches, make_loader


def test_digits_is_a_fixed_stratified_split_of_1797_real_images() -> None:
    train = build_dataset("digits", "train", 32)
    val = build_dataset("digits", "val", 48)
    assert (len(train), len(val)) == (1437, 360)
    assert set(train.indices.tolist()).isdisjoint(val.indices.tolist())
    counts = collections.Counter(val.targets.tolist())
    assert sorted(counts) == list(range(10)) and min(counts.values()) >= 35
    image, label = val[0]
    assert image.shape == (3, 48, 48) and 0 <= label < 10
    assert torch.equal(val[0][0], val[0][0])  # no augmentation on val
    assert not torch.equal(train[0][0], train[0][0])  # random shifts on train


def test_the_digits_shift_is_torchvisions_random_affine_to_the_bit() -> None:
    """The digits' training shift (torchvision's draw, applied as a whole-pixel shift) gives
    ``RandomAffine``'s image bit for bit and leaves the random stream where it does, so a
    training run is the same run either way; large shifts and non-square images too."""
    from torchvision.transforms import v2

    from mobilenets.data.digits import DigitsDataset, shift

    train = DigitsDataset("train", 33)
    for augment, shape, count in (
        (train._augment, None, 200),
        (v2.RandomAffine(degrees=0, translate=(0.6, 0.6)), (3, 20, 31), 100),
    ):
        for seed in range(count):
            image = torch.randn(shape) if shape else train.images[seed]
            torch.manual_seed(seed)
            expected, state = augment(image), torch.get_rng_state()
            torch.manual_seed(seed)
            got = (
                train[seed][0][:1]
                if not shape
                else shift(image, *augment.make_params([image])["translate"])
            )
            assert torch.equal(got, expected) and torch.equal(torch.get_rng_state(), state), seed
    assert torch.equal(shift(torch.ones(1, 4, 4), 4, 0), torch.zeros(1, 4, 4))


def test_image_folder_reads_classes_and_resolution(tiny_image_folder) -> None:
    ds = build_dataset(str(tiny_image_folder), "val", 32)
    assert ds.classes == ["circle", "square", "stripes"] and len(ds) == 9
    assert ds[0][0].shape == (3, 32, 32)


def test_bad_image_fails_with_its_path_even_inside_a_worker(tiny_image_folder) -> None:
    bad = tiny_image_folder / "train" / "square" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = build_dataset(str(tiny_image_folder), "train", 32)
    loader = make_loader(ds, 4, shuffle=False, workers=1)
    with pytest.raises(BadImageError, match=r"cannot read image .*broken\.png.*--skip-bad-images"):
        list(batches(loader, "train", progress=False))  # as the training passes read it


def test_skip_bad_images_counts_them(tiny_image_folder) -> None:
    (tiny_image_folder / "val" / "circle" / "empty.png").write_bytes(b"")
    ds = build_dataset(str(tiny_image_folder), "val", 32, skip_bad_images=True)
    batches = list(make_loader(ds, 4, shuffle=False))
    assert sum(b[3] for b in batches) == 1
    assert sum(len(b[1]) for b in batches) == 9


def test_cache_in_memory_equals_reading_from_disk(tiny_image_folder) -> None:
    disk = build_dataset(str(tiny_image_folder), "val", 32)
    cached = build_dataset(str(tiny_image_folder), "val", 32, cache_in_memory=True)
    assert len(cached) == len(disk)
    torch.testing.assert_close(cached[4][0], disk[4][0], atol=0.05, rtol=0)
    assert cached[4][1] == disk[4][1]


def test_cache_that_does_not_fit_is_refused_with_the_estimate(tiny_image_folder, monkeypatch):
    monkeypatch.setattr(cache_module, "available_memory", lambda: 10_000)
    with pytest.raises(MemoryError, match=r"needs about 0\.0 GiB for 18 images at 224 px"):
        build_dataset(str(tiny_image_folder), "train", 224, cache_in_memory=True)


def test_bad_specs(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown data spec 'mnist'"):
        parse_spec("mnist")
    with pytest.raises(FileNotFoundError, match=r"has no train/ or val/ subfolder"):
        parse_spec(str(tmp_path))
    (tmp_path / "train").mkdir()
    assert parse_spec(str(tmp_path)).kind == "folder"
    with pytest.raises(FileNotFoundError, match=r"has no val/ subfolder"):
        build_dataset(str(tmp_path), "val", 32)
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset("digits", "test", 32)


def test_eval_preprocessing_equals_torchvisions_for_its_weights() -> None:
    """The same tensor as torchvision's IMAGENET1K_V2 preset, on a real photograph."""
    from PIL import Image
    from sklearn.datasets import load_sample_images
    from torchvision.models import MobileNet_V2_Weights

    from mobilenets.data.transforms import eval_transform

    photo = Image.open(load_sample_images().filenames[0]).convert("RGB")
    theirs = MobileNet_V2_Weights.IMAGENET1K_V2.transforms()(photo)
    ours = eval_transform(224, resize=232)(photo)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_the_photos_data_set(tmp_path) -> None:
    """13 photographs, 40 train and 20 val patches each, cut once; an interrupted build is
    redone with the same seeded cut."""
    from PIL import Image

    from mobilenets.data import build_dataset
    from mobilenets.data.photos import COMPLETE, PHOTOS, prepare_photos

    train = build_dataset("photos", "train", 64, root=tmp_path)
    val = build_dataset("photos:large", "val", 224, root=tmp_path)
    assert train.classes == sorted(PHOTOS) and len(train) == 13 * 40 and len(val) == 13 * 20
    sides = [Image.open(p).size for p, _ in train.samples]
    assert all(w == h and 64 <= w <= 128 for w, h in sides)
    assert min(Image.open(p).size[0] for p, _ in val.samples) >= 130
    folder = prepare_photos(tmp_path)
    first = (folder / "val" / "chelsea" / "000.png").read_bytes()
    (folder / COMPLETE).unlink()  # as if killed before the end
    assert prepare_photos(tmp_path) == folder and (folder / COMPLETE).is_file()
    assert (folder / "val" / "chelsea" / "000.png").read_bytes() == first  # seeded: the same cut
