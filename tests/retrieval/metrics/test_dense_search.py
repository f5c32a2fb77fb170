import torch

from kd.retrieval.metrics.dense_search import build_index, search
from kd.retrieval.metrics.evaluate import rerank


def test_faiss_inner_product_order():
    docs = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=-1)
    queries = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.1]]), dim=-1)
    run, scores = search(build_index(docs), queries, ["a", "b", "c"], ["q1", "q2"], k=3)
    assert run == {"q1": ["c", "b", "a"], "q2": ["a", "b", "c"]}
    assert scores["q1"][0] > scores["q1"][1] > scores["q1"][2]


def test_k_larger_than_corpus_is_clipped():
    docs = torch.eye(2)
    run, _ = search(build_index(docs), torch.eye(2)[:1], ["a", "b"], ["q"], k=100)
    assert run == {"q": ["a", "b"]}


class _LengthTeacher:
    """Scores a pair by the document's length: longer = more relevant."""

    def score(self, queries, documents, batch_size=64):
        return torch.tensor([float(len(d)) for d in documents])


def test_rerank_orders_by_teacher_score_within_depth():
    corpus = {"a": "x", "b": "xxx", "c": "xx", "d": "xxxxxxxx"}
    reranked = rerank(_LengthTeacher(), corpus, {"q": "query"}, {"q": ["a", "b", "c", "d"]}, depth=3)
    assert reranked == {"q": ["b", "c", "a"]}
