import pytest

from kd.retrieval.data.sources import RetrievalSplits
from kd.retrieval.dev_split import carve_dev_split


def _splits(n=50):
    return RetrievalSplits(corpus={f"d{i}": f"doc {i}" for i in range(n)},
                           train_queries={f"q{i}": f"query {i}" for i in range(n)},
                           train_qrels={f"q{i}": {f"d{i}": 1} for i in range(n)},
                           eval_queries={"t1": "test query"}, eval_qrels={"t1": {"d0": 1}})


def test_dev_split_is_seeded_disjoint_from_training_and_sized_by_fraction():
    train, dev = carve_dev_split(_splits(), 0.1, seed=3)
    again_train, again = carve_dev_split(_splits(), 0.1, seed=3)
    _, other = carve_dev_split(_splits(), 0.1, seed=4)
    assert len(dev) == 5 and dev.queries == again.queries and dev.queries != other.queries
    assert not set(dev.queries) & set(train.train_queries) and not set(dev.qrels) & set(train.train_qrels)
    assert len(train.train_qrels) == 45
    assert dev.qrels == {q: {f"d{q[1:]}": 1} for q in dev.queries}
    assert train.eval_queries == {"t1": "test query"}  # test is never touched


def test_dev_fraction_zero_keeps_everything_for_training():
    splits = _splits()
    train, dev = carve_dev_split(splits, 0.0, seed=0)
    assert dev is None and train is splits


def test_dev_split_leaves_at_least_one_training_query_and_rejects_bad_fractions():
    train, dev = carve_dev_split(_splits(6), 0.5, seed=0)
    assert len(dev) == 5 and len(train.train_qrels) == 1
    with pytest.raises(ValueError, match="dev fraction"):
        carve_dev_split(_splits(), 1.0, seed=0)
