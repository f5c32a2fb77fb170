import pytest

from kd.retrieval.data.examples import DistillationExamples, EpochSampler, Example

CORPUS = {f"d{i}": f"text {i}" for i in range(30)}
QUERIES = {"q1": "one", "q2": "two"}
POSITIVES = {"q1": {"d0", "d1", "d2"}, "q2": {"d3"}}


def _examples(num_negatives=5, seed=7):
    examples = [Example("q1", "d0", ("d9", "d1", "d9")), Example("q2", "d3")]
    return DistillationExamples(examples, QUERIES, CORPUS, POSITIVES, num_negatives, seed)


def test_positive_first_then_given_negatives_and_never_a_known_positive():
    data = _examples()
    for epoch in range(5):
        item = data[(0, epoch)]
        assert item["doc_ids"][0] == "d0"
        assert item["doc_ids"][1] == "d9"  # given negative kept (d1 is a known positive: dropped; dup removed)
        assert not set(item["doc_ids"][1:]) & POSITIVES["q1"]
        assert len(set(item["doc_ids"])) == 6
        assert item["docs"] == [CORPUS[d] for d in item["doc_ids"]]


def test_random_negatives_are_seeded_per_epoch():
    a, b = _examples(seed=7), _examples(seed=7)
    assert a[(1, 0)] == b[(1, 0)]
    assert a[(1, 0)]["doc_ids"] != a[(1, 1)]["doc_ids"]
    assert _examples(seed=8)[(1, 0)]["doc_ids"] != a[(1, 0)]["doc_ids"]


def test_too_many_negatives_is_refused():
    with pytest.raises(ValueError, match="num_negatives"):
        _examples(num_negatives=28)


def test_sampler_yields_epoch_and_reshuffles():
    sampler = EpochSampler(10, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(i for i, _ in first) == list(range(10))
    assert {e for _, e in first} == {0} and {e for _, e in second} == {1}
    assert [i for i, _ in first] != [i for i, _ in second]
    assert list(EpochSampler(10, seed=1)) == first
