"""Which sample indices each epoch and each distributed rank reads."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from onestage.data.augmented import SampleKey
from onestage.engine.distributed import DistContext


class EpochSampler(Sampler[int]):
    """Indices for one epoch and one rank.

    Fresh synthetic data: indices e*n .. e*n + n-1 for epoch e (`SyntheticDataset` reads the
    epoch's stream from them). A fixed set: a permutation seeded by (seed, epoch), repeated to
    fill n. Ranks take interleaved slices. With `keys`, each index comes as a SampleKey
    (epoch, position in the epoch's n draws, index), which the augmentation pipeline seeds from.
    """

    def __init__(
        self,
        dataset_size: int,
        count: int,
        shuffle: bool,
        seed: int,
        context: DistContext,
        keys: bool = False,
    ) -> None:
        self.dataset_size = dataset_size
        self.count = count
        self.shuffle = shuffle
        self.seed = seed
        self.context = context
        self.keys = keys
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if not self.shuffle:
            first = self.epoch * self.dataset_size
            return [first + i % self.dataset_size for i in range(self.count)]
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        repeats = math.ceil(self.count / self.dataset_size)
        order = torch.cat([torch.randperm(self.dataset_size, generator=generator)] * repeats)
        return order[: self.count].tolist()

    def __iter__(self) -> Iterator[int | SampleKey]:
        indices: list = self._indices()
        if self.keys:
            indices = [SampleKey(self.epoch, at, index) for at, index in enumerate(indices)]
        return iter(indices[self.context.rank :: self.context.world_size])

    def __len__(self) -> int:
        return len(range(self.context.rank, self.count, self.context.world_size))
