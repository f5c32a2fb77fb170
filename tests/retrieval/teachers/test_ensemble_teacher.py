import pytest
import torch

from kd.retrieval.dev_split import DevSplit
from kd.retrieval.teacher_audit import select_fusion
from kd.retrieval.teachers.corpus_teacher import CorpusTeacher
from kd.retrieval.teachers.ensemble import EnsembleTeacher, normalise_rows, weight_grid


class FixedTeacher(CorpusTeacher):
    """Scores from a table: query text -> [N] row."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def _index_texts(self, texts):
        pass

    def corpus_scores(self, queries):
        return torch.tensor([self.table[q] for q in queries], dtype=torch.float32)

    def identity(self):
        return {"kind": "fixed", "table": sorted(self.table)}


def test_zscore_rows_have_zero_mean_unit_std_over_their_top_k():
    rows = torch.tensor([[5.0, 3.0, 1.0, 0.0], [100.0, 50.0, 0.0, -10.0]])
    z = normalise_rows(rows, "zscore", depth=3)
    top = z.topk(3, dim=1).values
    assert torch.allclose(top.mean(1), torch.zeros(2), atol=1e-6)
    assert torch.allclose(top.std(1, unbiased=False), torch.ones(2), atol=1e-5)


def test_rrf_rows_are_reciprocal_ranks_cut_at_depth():
    r = normalise_rows(torch.tensor([[0.1, 0.9, 0.5]]), "rrf", depth=2, rrf_k=60)
    assert torch.allclose(r, torch.tensor([[0.0, 1 / 61, 1 / 62]]))


def test_ensemble_score_is_the_weighted_sum_of_normalised_member_scores():
    a = FixedTeacher({"q": [3.0, 1.0, 2.0]})
    b = FixedTeacher({"q": [0.0, 10.0, 5.0]})
    ens = EnsembleTeacher({"a": a, "b": b}, {"a": 2.0, "b": 1.0}, method="zscore", depth=3).index(["x", "y", "z"])
    expected = 2 * normalise_rows(torch.tensor([[3.0, 1.0, 2.0]]), "zscore", 3) + normalise_rows(
        torch.tensor([[0.0, 10.0, 5.0]]), "zscore", 3)
    assert torch.allclose(ens.score(["q", "q", "q"], ["x", "y", "z"]), expected[0])


def test_ensemble_refuses_weights_that_do_not_match_its_members_and_an_empty_ensemble():
    with pytest.raises(ValueError, match="do not match"):
        EnsembleTeacher({"a": FixedTeacher({})}, {"b": 1.0})
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleTeacher({}, {})


def test_select_fusion_on_dev_picks_the_member_that_ranks_the_dev_positives_first():
    docs = ["d0", "d1", "d2", "d3"]
    good = {"q0": [1.0, 0.0, 0.0, 0.0], "q1": [0.0, 1.0, 0.0, 0.0]}
    bad = {"q0": [0.0, 0.0, 1.0, 0.5], "q1": [0.0, 0.0, 0.5, 1.0]}
    ens = EnsembleTeacher({"good": FixedTeacher(good), "bad": FixedTeacher(bad)}, {"good": 1.0, "bad": 1.0})
    corpus = {d: d for d in docs}
    ens.index(corpus)
    dev = DevSplit({"q0": "q0", "q1": "q1"}, {"q0": {"d0": 1}, "q1": {"d1": 1}})
    chosen = select_fusion(ens, corpus, dev)
    assert chosen["dev"]["ndcg@10"] == pytest.approx(1.0)
    assert chosen["weights"]["good"] > chosen["weights"]["bad"]
    assert ens.weights == chosen["weights"]


def test_weight_grid_drops_all_zero_and_scaled_duplicates():
    grid = weight_grid(["a", "b"], (0.0, 1.0, 2.0))
    assert {"a": 0.0, "b": 0.0} not in grid
    assert sum(1 for g in grid if g["a"] == g["b"]) == 1  # (1, 1) and (2, 2) are the same fusion
