"""Length-bucketed batches: examples of similar token length share a batch, so batches pad less.

Each epoch: a seeded shuffle of all example indices (the same generator as ``EpochSampler``), cut into pools of
``batch_size * pool_batches`` examples; each pool is sorted by length and cut into batches; the batches of the
whole epoch are then shuffled (same generator). Every index appears exactly once per epoch (``drop_last`` drops
only the one short batch, if any), and the batches depend only on (seed, epoch, lengths): a resumed run sees
the same batches. Yields lists of ``(index, epoch)`` like ``EpochSampler`` yields single pairs.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketBatchSampler(Sampler):
    """Batch sampler over ``len(lengths)`` examples; ``lengths[i]`` is example i's token count (any unit).

    Lightning calls ``set_epoch`` at the start of every epoch (on the DataLoader's batch sampler).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = 8,
                 drop_last: bool = False):
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size and pool_batches must be >= 1, got {batch_size} and {pool_batches}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.pool_batches = pool_batches
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        size = len(self.lengths)
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def batches(self) -> list[list[int]]:
        """This epoch's batches of example indices."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            members = sorted(order[start : start + pool], key=lambda i: (-self.lengths[i], i))
            batches.extend(members[s : s + self.batch_size] for s in range(0, len(members), self.batch_size))
        # only the last pool can be incomplete, so only the very last batch can be short
        tail = batches.pop() if batches and len(batches[-1]) < self.batch_size else None
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        if tail and not self.drop_last:
            shuffled.append(tail)
        return shuffled

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter([[(i, self.epoch) for i in batch] for batch in self.batches()])
