from kd.retrieval.data.mining import bm25_rankings, mine_hard_negatives

CORPUS = {
    "a": "cats purr and sleep all day",
    "b": "dogs bark at the mailman",
    "c": "cats and dogs can be friends",
    "d": "the stock market fell today",
}


def test_bm25_ranks_lexical_matches_first():
    run = bm25_rankings(CORPUS, {"q": "why do cats purr"}, depth=4)
    assert run["q"][0] == "a"
    assert run["q"].index("c") < run["q"].index("d") or "d" not in run["q"]


def test_mining_skips_known_positives():
    rankings = {"q": ["a", "c", "b", "d"]}
    mined = mine_hard_negatives([("q", "a")], rankings, {"q": {"a", "c"}}, count=2)
    assert mined == [["b", "d"]]


def test_teacher_filter_drops_likely_false_negatives():
    rankings = {"q": ["b", "c", "d"]}
    teacher_scores = {"a": 0.8, "b": 0.95, "c": 0.3, "d": 0.1}  # b scores above the positive: a false negative

    def teacher(queries, docs):
        by_text = {v: k for k, v in CORPUS.items()}
        return [teacher_scores[by_text[d]] for d in docs]

    mined = mine_hard_negatives([("q", "a")], rankings, {"q": {"a"}}, count=2, queries={"q": "cats"},
                                corpus=CORPUS, teacher=teacher)
    assert mined == [["c", "d"]]


def test_dense_mining_uses_the_students_index(tiny_model_dir):
    import torch

    from kd.retrieval.data.mining import dense_rankings
    from kd.retrieval.metrics.dense_search import build_index, search
    from kd.retrieval.models.bi_encoder import BiEncoder

    encoder = BiEncoder(str(tiny_model_dir), max_length=32)
    queries = {"q": "why do cats purr"}
    run = dense_rankings(encoder, CORPUS, queries, depth=3)
    vectors = encoder.encode(list(CORPUS.values()))
    expected, _ = search(build_index(vectors), encoder.encode(list(queries.values())), list(CORPUS), ["q"], 3)
    assert run == expected and len(run["q"]) == 3
    mined = mine_hard_negatives([("q", run["q"][0])], run, {"q": {run["q"][0]}}, count=2)
    assert mined == [run["q"][1:3]]
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(len(CORPUS)), atol=1e-5)
