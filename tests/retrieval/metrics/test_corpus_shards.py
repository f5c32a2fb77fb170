"""Corpus encoding in shards: shards written independently load back as the whole corpus, in order."""

import pytest
import torch

from kd.errors import ConfigError
from kd.retrieval.metrics.corpus_shards import corpus_fingerprint, encode_shard, load_shards, parse_shard, shard_bounds


class _LengthEncoder:
    """Embeds a text as [len, number of 'a's] (deterministic, so shards can be checked value by value)."""

    name_or_path = "length"
    dim = 2

    def encode(self, texts, batch_size=64):
        return torch.tensor([[float(len(t)), float(t.count("a"))] for t in texts])


CORPUS = {f"d{i}": "a" * i + "b" * (7 - i % 7) for i in range(11)}


def test_three_shards_load_back_as_the_whole_corpus_in_order(tmp_path):
    encoder = _LengthEncoder()
    fingerprint = corpus_fingerprint(CORPUS, encoder.name_or_path)
    for shard in (2, 0, 1):  # any order, e.g. parallel jobs
        encode_shard(encoder, CORPUS, shard, 3, tmp_path, fingerprint=fingerprint)
    assert torch.equal(load_shards(tmp_path, CORPUS, fingerprint), encoder.encode(list(CORPUS.values())))
    assert [shard_bounds(11, i, 3) for i in range(3)] == [(0, 3), (3, 7), (7, 11)]


def test_missing_foreign_or_mixed_shards_are_refused(tmp_path):
    encoder = _LengthEncoder()
    fingerprint = corpus_fingerprint(CORPUS, encoder.name_or_path)
    encode_shard(encoder, CORPUS, 0, 2, tmp_path, fingerprint=fingerprint)
    with pytest.raises(FileNotFoundError, match=r"shard\(s\) \[1\] of 2 are missing"):
        load_shards(tmp_path, CORPUS, fingerprint)
    encode_shard(encoder, CORPUS, 1, 2, tmp_path, fingerprint=fingerprint)
    other = dict(CORPUS, d3="changed text")
    with pytest.raises(ConfigError, match="written for another corpus or encoder"):
        load_shards(tmp_path, other, corpus_fingerprint(other, encoder.name_or_path))
    encode_shard(encoder, CORPUS, 0, 3, tmp_path, fingerprint=fingerprint)
    with pytest.raises(ConfigError, match=r"shards of different splits \[2, 3\] are mixed"):
        load_shards(tmp_path, CORPUS, fingerprint)


def test_shard_argument_is_checked():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1-4", "a/b"):
        with pytest.raises(ConfigError, match="shard must be 'i/n'"):
            parse_shard(bad)
