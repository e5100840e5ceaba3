"""``--cache-in-memory``: decode and resize every image once, then train from uint8 tensors."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from mobilenets.data.transforms import eval_resize_size
from mobilenets.errors import CacheTooLargeError

MEMORY_HEADROOM = 0.8  # use at most 80% of the memory available now


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable``), or 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cache_bytes(num_images: int, resolution: int) -> int:
    """uint8 RGB at the eval resize size (``resolution / 0.875``), square."""
    side = eval_resize_size(resolution)
    return num_images * 3 * side * side


class InMemoryDataset(Dataset):
    """Every image of ``dataset`` (a ``SafeImageFolder`` without transform) decoded once.

    Images are resized (short side ``resolution / 0.875``) and center-cropped to a square, kept as
    uint8; ``transform`` (random resized crop or center crop, normalize) runs on those tensors.
    Refuses, with the estimate, a cache that would not fit in memory.
    """

    def __init__(self, dataset: Dataset, resolution: int, transform: Callable) -> None:
        need, have = cache_bytes(len(dataset), resolution), available_memory()
        if have and need > MEMORY_HEADROOM * have:
            raise CacheTooLargeError(
                f"--cache-in-memory needs about {need / 2**30:.1f} GiB for {len(dataset):,} images "
                f"at {resolution} px, but only {have / 2**30:.1f} GiB is available (80% of it may "
                "be used); train without the cache or at a lower resolution"
            )
        side = eval_resize_size(resolution)
        prepare = v2.Compose([v2.ToImage(), v2.Resize(side), v2.CenterCrop(side)])
        dataset.transform = prepare
        images, targets, self.names, self.skipped = [], [], [], 0
        for i in tqdm(range(len(dataset)), desc="caching images", unit="img", disable=None):
            sample = dataset[i]
            if sample is None:
                self.skipped += 1
                continue
            images.append(sample[0])
            targets.append(sample[1])
            self.names.append(dataset.sample_name(i))
        self.images = torch.stack(images)
        self.targets = torch.tensor(targets)
        self.classes = dataset.classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def sample_name(self, index: int) -> str:
        return self.names[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.targets[index])
