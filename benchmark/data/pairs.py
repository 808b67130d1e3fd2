"""Pre-training pairs as a torch Dataset: augmented views of each image (two by default).

Augmentation randomness is seeded per (seed, epoch, index) and batch order per
(seed, epoch), so results do not depend on worker count, and a run resumed
mid-epoch sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class PairViews(Dataset):
    def __init__(self, images: np.ndarray, transform: Callable, seed: int, views: int = 2) -> None:
        self.images, self.transform, self.seed, self.views = images, transform, seed, views
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        image = np.asarray(self.images[i])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, i))
            views = {f"view{v + 1}": self.transform(image) for v in range(self.views)}
        return {**views, "index": i}


class EpochBatches(Sampler[list[int]]):
    """Full batches of a per-epoch permutation, starting at batch ``start``.

    Under DDP (``world`` processes) a global batch is ``world * batch_size``
    consecutive entries of the permutation and process ``rank`` takes its
    ``rank``-th slice, so the global batches do not depend on the process count.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        size = self.batch_size * self.world
        for b in range(self.start, self.batches_per_epoch):
            first = b * size + self.rank * self.batch_size
            yield order[first : first + self.batch_size].tolist()
