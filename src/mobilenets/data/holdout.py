"""Training images held out of training: a seeded split of a train split, the same for every
process and every run with the seed (NetAdapt ranks its proposals and the block search scores
its candidates on them; the val split stays untouched for the final comparison)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset, Subset

from mobilenets.errors import ConfigError


class Part(Subset):
    """Some samples of a dataset that keeps its ``classes`` (and its sample names)."""

    def __init__(self, dataset: Dataset, indices: list[int]) -> None:
        super().__init__(dataset, indices)
        self.classes = dataset.classes

    def sample_name(self, index: int) -> str:
        from mobilenets.data import sample_name

        return sample_name(self.dataset, self.indices[index])


def holdout_indices(size: int, holdout: int, seed: int, least: int = 1) -> tuple[list, list]:
    """(held, rest): ``holdout`` indices of a seeded permutation of ``range(size)`` and the
    others; at least ``least`` must be left to train on."""
    if size < holdout + least:
        raise ConfigError(
            f"{size} training images are too few to hold out {holdout} and train on the rest "
            f"(at least {least}); hold out fewer"
        )
    order = np.random.default_rng(seed).permutation(size)
    return order[:holdout].tolist(), order[holdout:].tolist()


def split_holdout(dataset: Dataset, holdout: int, seed: int, least: int = 1) -> tuple[Part, Part]:
    """(held, rest) of ``dataset``, as :func:`holdout_indices` splits it."""
    held, rest = holdout_indices(len(dataset), holdout, seed, least)
    return Part(dataset, held), Part(dataset, rest)
