import random

import pytest

from kd.retrieval.data.buckets import LengthBucketBatchSampler


def _lengths(n=103, seed=0):
    rng = random.Random(seed)
    return [rng.randint(5, 300) for _ in range(n)]


def _padding(lengths, batches):
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_every_index_once_per_epoch_and_deterministic_given_seed_and_epoch():
    lengths = _lengths()
    sampler = LengthBucketBatchSampler(lengths, batch_size=8, seed=3, pool_batches=4)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler) == 13
    assert sorted(i for batch in epoch0 for i, _ in batch) == list(range(103))
    assert {e for batch in epoch0 for _, e in batch} == {0}
    assert [len(b) for b in epoch0[:-1]] == [8] * 12 and len(epoch0[-1]) == 7
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert {e for batch in epoch1 for _, e in batch} == {1}
    assert sorted(i for batch in epoch1 for i, _ in batch) == list(range(103))
    assert [[i for i, _ in b] for b in epoch1] != [[i for i, _ in b] for b in epoch0]
    again = LengthBucketBatchSampler(lengths, batch_size=8, seed=3, pool_batches=4)
    assert list(again) == epoch0
    again.set_epoch(1)
    assert list(again) == epoch1


def test_drop_last_drops_only_the_short_batch():
    sampler = LengthBucketBatchSampler(_lengths(), batch_size=8, seed=3, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 12 and all(len(b) == 8 for b in batches)
    assert len({i for b in batches for i, _ in b}) == 96


def test_buckets_pad_less_than_a_plain_shuffle():
    lengths = _lengths(400)
    bucketed = LengthBucketBatchSampler(lengths, batch_size=16, seed=0, pool_batches=8).batches()
    order = list(range(400))
    random.Random(0).shuffle(order)
    plain = [order[s : s + 16] for s in range(0, 400, 16)]
    assert _padding(lengths, bucketed) < 0.5 * _padding(lengths, plain)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketBatchSampler([1, 2], batch_size=0, seed=0)
