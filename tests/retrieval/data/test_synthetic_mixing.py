"""data.synthetic: strict reading, never a test document or test query, caps, and an unchanged dev split."""

from __future__ import annotations

import json
import re

import pytest

from kd.errors import ConfigError, DataFormatError
from kd.retrieval.data.sources import load_retrieval_data
from kd.retrieval.data.synthetic import load_synthetic
from kd.retrieval.dev_split import carve_dev_split


def write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


SYNTHETIC = [
    {"_id": "syn-d5-0", "text": "who plays the violin concerto", "doc_id": "d5", "rank": 1},
    {"_id": "syn-d6-0", "text": "satellite put in orbit by a rocket", "doc_id": "d6", "rank": 1},
    {"_id": "syn-d7-0", "text": "flavour of roasted coffee", "doc_id": "d7"},
    {"_id": "syn-d9-0", "text": "does yeast make dough rise", "doc_id": "d9"},   # d9 is a test positive (q9)
    {"_id": "syn-d8-0", "text": "Tennis serve racket!", "doc_id": "d8"},        # the text of test query q10
]


def test_synthetic_queries_join_training_but_never_a_test_document_or_query(tiny_beir_dir, tmp_path):
    path = write(tmp_path / "queries.jsonl", SYNTHETIC)
    plain = load_retrieval_data("beir", str(tiny_beir_dir))
    mixed = load_retrieval_data("beir", str(tiny_beir_dir), synthetic=str(path))
    assert set(mixed.train_queries) - set(plain.train_queries) == {"syn-d5-0", "syn-d6-0", "syn-d7-0"}
    assert mixed.train_qrels["syn-d6-0"] == {"d6": 1} and mixed.train_queries["syn-d7-0"] == "flavour of roasted coffee"
    assert mixed.synthetic_ids == {"syn-d5-0", "syn-d6-0", "syn-d7-0"}
    info = mixed.synthetic_info
    assert (info["in_file"], info["allowed"], info["used"]) == (5, 3, 3)
    assert info["dropped"]["test_positive"] == 1 and info["dropped"]["test_query_text"] == 1
    assert mixed.eval_queries == plain.eval_queries and mixed.eval_qrels == plain.eval_qrels
    # the dev split is carved from the labelled queries only: the same with and without synthetic data
    _, dev_plain = carve_dev_split(plain, 0.3, seed=1)
    train_mixed, dev_mixed = carve_dev_split(mixed, 0.3, seed=1)
    assert dev_mixed.queries == dev_plain.queries and not set(dev_mixed.queries) & mixed.synthetic_ids
    assert mixed.synthetic_ids <= set(train_mixed.train_qrels)


@pytest.mark.parametrize("max_count, ratio, used", [(None, None, 3), (2, None, 2), (None, 0.25, 2), (1, 0.25, 1),
                                                    (0, None, 0)])
def test_cap_and_ratio_take_a_seeded_sample(tiny_beir_dir, tmp_path, max_count, ratio, used):
    path = write(tmp_path / "queries.jsonl", SYNTHETIC)
    mixed = load_retrieval_data("beir", str(tiny_beir_dir), synthetic=str(path), synthetic_max=max_count,
                                synthetic_ratio=ratio, seed=5)  # 8 labelled train queries: ratio 0.25 -> 2
    assert len(mixed.synthetic_ids) == used
    again = load_retrieval_data("beir", str(tiny_beir_dir), synthetic=str(path), synthetic_max=max_count,
                                synthetic_ratio=ratio, seed=5)
    assert again.synthetic_ids == mixed.synthetic_ids


def test_documents_outside_a_corpus_subset_are_left_out(tiny_beir_dir, tmp_path):
    path = write(tmp_path / "queries.jsonl", SYNTHETIC)
    mixed = load_retrieval_data("beir", str(tiny_beir_dir), synthetic=str(path), corpus_size=12, seed=0)
    used = {mixed.train_qrels[q].popitem()[0] for q in mixed.synthetic_ids}
    assert used <= set(mixed.corpus)
    assert mixed.synthetic_info["dropped"]["not_in_corpus_subset"] == 3 - len(used)


@pytest.mark.parametrize("records, message", [
    ([SYNTHETIC[0], {"_id": "s2", "text": "x y z", "doc_id": "d404"}], ":2: doc_id 'd404' is not in the corpus"),
    ([{"_id": "s1", "text": "  ", "doc_id": "d5"}], ":1: field 'text' is empty"),
    ([SYNTHETIC[0], SYNTHETIC[0]], ":2: duplicate _id 'syn-d5-0' (first on line 1)"),
    (['{"_id": "s1", "text": "a b c"'], ":1: malformed JSON"),
    ([{"_id": "s1", "text": "a b c"}], ":1: missing field 'doc_id'"),
])
def test_bad_synthetic_file_names_file_line_and_problem(tiny_splits, tmp_path, records, message):
    path = write(tmp_path / "bad.jsonl", records)
    with pytest.raises(DataFormatError, match=re.escape(str(path) + message)):
        load_synthetic(path, tiny_splits.corpus)


def test_empty_file_and_bad_caps_are_refused(tiny_beir_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataFormatError, match="empty.jsonl: file is empty"):
        load_retrieval_data("beir", str(tiny_beir_dir), synthetic=str(empty))
    path = write(tmp_path / "queries.jsonl", SYNTHETIC)
    with pytest.raises(ConfigError, match="data.synthetic_ratio must be a number >= 0"):
        load_retrieval_data("beir", str(tiny_beir_dir), synthetic=str(path), synthetic_ratio=-1)
