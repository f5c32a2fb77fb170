import math
import random

import pytest
import torch

from kd.retrieval.dev_split import DevSplit
from kd.retrieval.teacher_audit import audit_teacher, fit_teacher_temperature, rank_pools


def test_fitted_temperature_recovers_the_temperature_that_generated_the_labels():
    rng = random.Random(0)
    torch.manual_seed(0)
    true_temperature = 0.5
    pools, scores, qrels = {}, {}, {}
    for i in range(400):
        s = torch.randn(10)
        label = int(torch.multinomial(torch.softmax(s / true_temperature, 0), 1))
        q = f"q{i}"
        pools[q] = [f"d{j}" for j in range(10)]
        scores[q] = s.tolist()
        qrels[q] = {f"d{label}": 1}
    fit = fit_teacher_temperature(scores, pools, qrels, student_temperature=0.05)
    assert fit["teacher_temperature"] == pytest.approx(true_temperature, rel=0.25)
    assert fit["dev_nll"] < fit["uniform_nll"] == pytest.approx(math.log(10))
    del rng


def test_a_perfect_teacher_is_not_fitted_sharper_than_the_student_can_express():
    pools = {f"q{i}": ["a", "b", "c"] for i in range(5)}
    scores = {q: [1.0, 0.0, 0.5] for q in pools}
    qrels = {q: {"a": 1} for q in pools}
    fit = fit_teacher_temperature(scores, pools, qrels, student_temperature=0.05)
    assert fit["teacher_temperature"] == pytest.approx(fit["floor"]) and fit["floor"] == pytest.approx(1.0 * 0.05 / 2)


def test_rank_pools_orders_by_score_and_keeps_pool_order_on_ties():
    assert rank_pools({"q": ["a", "b", "c"]}, {"q": [0.1, 0.5, 0.1]}) == {"q": ["b", "a", "c"]}


class _RandomStudent:
    """A stand-in student with fixed random unit vectors per text (a ranker that knows nothing)."""

    def encode(self, texts, batch_size=64):
        rows = [torch.randn(8, generator=torch.Generator().manual_seed(sum(map(ord, t)) * 7919)) for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def test_audit_says_a_teacher_that_knows_the_labels_beats_a_useless_student():
    corpus = {f"d{i}": f"topic{i} words about topic{i // 3}" for i in range(30)}
    dev = DevSplit({f"q{i}": f"topic{i}" for i in range(0, 30, 3)}, {f"q{i}": {f"d{i}": 1} for i in range(0, 30, 3)})
    text_to_doc = {t: d for d, t in corpus.items()}
    query_to_id = {t: q for q, t in dev.queries.items()}

    def oracle(queries, documents):
        return [1.0 if dev.qrels[query_to_id[q]].get(text_to_doc[d]) else 0.0 for q, d in zip(queries, documents)]

    audit = audit_teacher(oracle, _RandomStudent(), corpus, dev, depth=5)
    assert audit["split"] == "dev" and audit["queries"] == 10
    assert audit["teacher"]["ndcg@10"] == pytest.approx(1.0) and audit["teacher_better"]
    assert audit["student"]["ndcg@10"] < audit["teacher"]["ndcg@10"]
    assert audit["calibration"]["queries"] == 10
