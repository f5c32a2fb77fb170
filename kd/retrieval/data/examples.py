"""Training examples for distillation: a query, its positive and k negatives, drawn reproducibly.

Each example is a query with one labelled positive and ``num_negatives`` negatives, filled in this order:
the given negatives (from a triplet file), then mined hard negatives, then random corpus documents. The
random ones are redrawn every epoch from a generator seeded with (seed, epoch, example index), so a run is
reproducible and a resumed run draws the same negatives. A known positive of the query is never a negative.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from kd.errors import ConfigError


@dataclass(frozen=True)
class Example:
    """One (query, positive) pair and the fixed negatives known at set-up (given + mined), as ids."""

    query_id: str
    positive_id: str
    fixed_negative_ids: tuple[str, ...] = ()


class DistillationExamples(Dataset):
    """Indexable by ``(example_index, epoch)`` -> dict(query_id, query, doc_ids [1+k], docs [1+k]).

    ``doc_ids[0]`` is the positive, ``doc_ids[1:]`` the k negatives.
    """

    def __init__(self, examples: Sequence[Example], queries: Mapping[str, str], corpus: Mapping[str, str],
                 positives: Mapping[str, set[str]], num_negatives: int, seed: int):
        if num_negatives < 0:
            raise ValueError(f"num_negatives must be >= 0, got {num_negatives}")
        max_positives = max((len(p) for p in positives.values()), default=0)
        if num_negatives > len(corpus) - max_positives:
            raise ConfigError(
                f"data.num_negatives={num_negatives} is larger than the corpus can supply "
                f"({len(corpus)} documents, up to {max_positives} positives per query)"
            )
        self.examples = list(examples)
        self.queries = queries
        self.corpus = corpus
        self.doc_ids = list(corpus)
        self.positives = positives
        self.num_negatives = num_negatives
        self.seed = seed

    def __len__(self) -> int:
        return len(self.examples)

    def negatives(self, index: int, epoch: int) -> list[str]:
        """The k negative ids of example ``index`` in ``epoch`` (deterministic)."""
        example = self.examples[index]
        excluded = self.positives.get(example.query_id, set()) | {example.positive_id}
        chosen = [d for d in dict.fromkeys(example.fixed_negative_ids) if d not in excluded][: self.num_negatives]
        taken = set(chosen)
        rng = random.Random(f"{self.seed}:{epoch}:{index}")
        while len(chosen) < self.num_negatives:
            candidate = self.doc_ids[rng.randrange(len(self.doc_ids))]
            if candidate not in excluded and candidate not in taken:
                chosen.append(candidate)
                taken.add(candidate)
        return chosen

    def __getitem__(self, key: tuple[int, int] | int) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        example = self.examples[index]
        doc_ids = [example.positive_id, *self.negatives(index, epoch)]
        return {
            "query_id": example.query_id,
            "query": self.queries[example.query_id],
            "doc_ids": doc_ids,
            "docs": [self.corpus[d] for d in doc_ids],
        }


class EpochSampler(Sampler):
    """Yields ``(index, epoch)``: a fresh seeded shuffle each epoch, and the epoch for the negative draw.

    Lightning calls ``set_epoch`` on the sampler at the start of every epoch. The order depends only on
    ``(seed, epoch)``, so a resumed run can skip the examples it already trained on: ``resume_at(epoch, start)``
    makes the next iteration of ``epoch`` begin at position ``start`` (once; later epochs start at 0).
    ``len()`` stays the full epoch so Lightning's batch counting lines up with the restored progress.

    Under data parallelism (``num_replicas`` processes) process ``rank`` takes every ``num_replicas``-th example
    of the epoch's order, starting at ``rank``; the order is cut to a multiple of ``num_replicas`` so every
    process trains the same number of steps (kd shards itself instead of Lightning's DistributedSampler, which
    would hide ``set_epoch`` and the resume position behind a wrapper; hence ``use_distributed_sampler: false``).
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, num_replicas: int = 1, rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, start position) for the next iteration

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """Begin the next iteration of ``epoch`` at position ``start`` of this process's share (0..len)."""
        if not 0 <= start <= len(self):
            raise ValueError(f"resume position {start} is outside an epoch of {len(self)} examples")
        self._resume = (epoch, start)

    def __len__(self) -> int:
        return self.size // self.num_replicas

    def order(self, epoch: int) -> list[int]:
        """The example indices this process trains on in ``epoch``, in training order."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            everything = torch.randperm(self.size, generator=generator).tolist()
        else:
            everything = list(range(self.size))
        return everything[: len(self) * self.num_replicas][self.rank:: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        return iter([(i, self.epoch) for i in self.order(self.epoch)[start:]])
