"""Sharded teacher scoring with ``Trainer.predict``: each process scores its share of the pairs, writes its shard
of the score cache, and rank 0 merges the shards into the one ``TeacherScoreCache``.

    kd-score-teacher data=scifact                                   # one process
    kd-score-teacher data=scifact trainer=ddp trainer.devices=8     # 8 GPUs (or CPU processes), one shard each

Lightning's distributed predict sampler gives every rank a disjoint, non-repeated slice of the pairs (pairs are
sorted by length first, so each rank's batches pad little). Each rank writes
``<cache>/teacher_scores/<key>.shard-<rank>-of-<W>.npz`` atomically at the end of its epoch, all ranks meet at a
barrier, and rank 0 adds every shard to the cache file (atomic rename) and removes the shards.
"""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from kd.retrieval.teacher_cache import TeacherScoreCache, pair_key


class TeacherScoringModule(L.LightningModule):
    """``predict_step`` scores a batch of (query, document) pairs with the frozen teacher and keeps the scores."""

    def __init__(self, teacher, cache: TeacherScoreCache, batch_size: int = 64):
        super().__init__()
        self.teacher = teacher.freeze()
        self.cache = cache
        self.batch_size = batch_size
        self.keys: list[bytes] = []
        self.values: list[float] = []
        self.merged_pairs = 0

    def predict_step(self, batch: list[tuple[str, str]], batch_idx: int) -> torch.Tensor:
        queries, documents = [q for q, _ in batch], [d for _, d in batch]
        scores = self.teacher.score(queries, documents, batch_size=self.batch_size)
        self.keys.extend(pair_key(q, d) for q, d in batch)
        self.values.extend(scores.tolist())
        return scores

    def on_predict_epoch_end(self) -> None:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        self.cache.write_shard(self.keys, self.values, rank, world)
        self.trainer.strategy.barrier("teacher-score-shards")
        if self.trainer.is_global_zero:
            self.merged_pairs = self.cache.merge_shards(world)
        self.trainer.strategy.barrier("teacher-score-merged")


def missing_pairs(cache: TeacherScoreCache, queries: Sequence[str], documents: Sequence[str]) -> list[tuple[str, str]]:
    """The distinct pairs not in ``cache`` yet, longest first (batches of similar length pad little)."""
    unique: dict[bytes, tuple[str, str]] = {}
    for q, d in zip(queries, documents):
        key = pair_key(q, d)
        if key not in cache.scores:
            unique.setdefault(key, (q, d))
    return sorted(unique.values(), key=lambda pair: -(len(pair[0]) + len(pair[1])))


def score_pairs_sharded(trainer: L.Trainer, teacher, cache: TeacherScoreCache, queries: Sequence[str],
                        documents: Sequence[str], batch_size: int = 64) -> int:
    """Score the uncached pairs over ``trainer``'s processes and merge them into ``cache`` (saved on disk).

    Returns how many pairs were scored. After a multi-process run the caller's ``cache`` object is reloaded from
    the merged file (with ``ddp_spawn`` the merge happens in a child process).
    """
    pairs = missing_pairs(cache, queries, documents)
    if not pairs:
        return 0
    loader = DataLoader(pairs, batch_size=batch_size, shuffle=False, collate_fn=list)
    trainer.predict(TeacherScoringModule(teacher, cache, batch_size), dataloaders=loader, return_predictions=False)
    cache.reload()
    return len(pairs)
