import math

import pytest

from kd.retrieval.metrics.retrieval import mrr_at_k, ndcg_at_k, recall_at_k, retrieval_metrics

RUN = {"q1": ["d3", "d1", "d2"], "q2": ["d5", "d4"]}
QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d5": 1}}


def test_recall():
    assert recall_at_k(RUN, QRELS, 1) == pytest.approx((0 + 1) / 2)
    assert recall_at_k(RUN, QRELS, 2) == pytest.approx((0.5 + 1) / 2)
    assert recall_at_k(RUN, QRELS, 3) == pytest.approx(1.0)


def test_mrr():
    assert mrr_at_k(RUN, QRELS, 10) == pytest.approx((1 / 2 + 1) / 2)
    assert mrr_at_k(RUN, QRELS, 1) == pytest.approx((0 + 1) / 2)


def test_ndcg_hand_computed():
    q1 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RUN, QRELS, 3) == pytest.approx((q1 + 1.0) / 2)


def test_graded_ndcg_uses_linear_gain():
    run = {"q": ["a", "b"]}
    qrels = {"q": {"a": 1, "b": 2}}
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(run, qrels, 10) == pytest.approx(expected)


def test_missing_query_counts_as_zero_and_unjudged_queries_are_ignored():
    qrels = dict(QRELS, q3={"d9": 1}, q4={"d1": 0})
    assert recall_at_k(RUN, qrels, 3) == pytest.approx((1 + 1 + 0) / 3)


def test_report_keys_and_empty_qrels():
    report = retrieval_metrics(RUN, QRELS)
    assert set(report) == {"recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10"}
    with pytest.raises(ValueError):
        recall_at_k(RUN, {"q": {"d": 0}}, 1)
