import pytest
import torch

from kd.retrieval.teachers.bm25 import BM25Teacher

CORPUS = {"d1": "the mitochondria is the powerhouse of the cell", "d2": "volcanoes erupt molten lava",
          "d3": "cells divide by mitosis", "d4": "lava cools into basalt rock"}


def test_bm25_teacher_scores_the_matching_document_highest_and_pairs_equal_corpus_rows():
    teacher = BM25Teacher().index(CORPUS).freeze()
    rows = teacher.corpus_scores(["lava eruption volcanoes", "mitochondria cell"])
    assert rows.shape == (2, 4)
    assert rows[0].argmax().item() == 1 and rows[1].argmax().item() == 0
    pairs = teacher.score(["lava eruption volcanoes", "mitochondria cell"], [CORPUS["d4"], CORPUS["d1"]])
    assert torch.allclose(pairs, torch.stack([rows[0, 3], rows[1, 0]]))
    assert teacher.identity()["corpus"] == teacher.corpus_fingerprint()


def test_bm25_teacher_refuses_a_document_outside_its_corpus_and_scoring_before_index():
    teacher = BM25Teacher().index(CORPUS)
    with pytest.raises(ValueError, match="not in it"):
        teacher.score(["lava"], ["a document nobody indexed"])
    with pytest.raises(RuntimeError, match="index"):
        BM25Teacher().score(["lava"], [CORPUS["d2"]])
