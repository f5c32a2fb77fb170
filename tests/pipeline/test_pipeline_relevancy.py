"""Answer relevancy (RAGAS definition) with the packaged MiniLM embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kd.pipeline.relevancy import Embedder, answer_relevancy, parse_judge, summarise


class ScriptedJudge:
    def __init__(self, reply: str):
        self.reply = reply
        self.calls = 0

    def chat(self, messages, max_new_tokens=128):
        self.calls += 1
        return self.reply


@pytest.fixture(scope="module")
def embedder():
    return Embedder("packaged:minilm")


def test_parse_judge_json_lines_and_garbage():
    p = parse_judge('Sure!\n{"questions": ["What is a Pod?", "What does a Pod hold?"], "noncommittal": 0}', 3)
    assert p.mode == "json" and p.questions == ["What is a Pod?", "What does a Pod hold?"] and p.noncommittal == 0
    p = parse_judge("1. What is a Pod?\n2. How are Pods scheduled?\nnoncommittal: 1", 3)
    assert p.mode == "lines" and len(p.questions) == 2 and p.noncommittal == 1
    assert parse_judge("no idea", 3).mode == "unparseable"
    # statements (the judge echoing the answer) are not questions
    echo = parse_judge('{"questions": ["A Pod is a group of containers.", "Pods share storage."], "noncommittal": 0}', 3)
    assert echo.mode == "unparseable" and echo.questions == []
    mixed = parse_judge('{"questions": ["A Pod is a group.", "What is a Pod?"], "noncommittal": 0}', 3)
    assert mixed.questions == ["What is a Pod?"]
    # cut off by the token limit: the complete quoted questions are kept
    cut = parse_judge('```json\n{"questions": ["What is a Pod?", "What does a Pod run?", "What is a Po', 3)
    assert cut.mode == "json_partial" and cut.questions == ["What is a Pod?", "What does a Pod run?"]


def test_score_is_mean_cosine_of_generated_questions(embedder):
    q = "What is a Kubernetes Pod?"
    gen = ["What is a Pod in Kubernetes?", "What does a Kubernetes Pod contain?", "Which bread is best?"]
    judge = ScriptedJudge(json.dumps({"questions": gen, "noncommittal": 0}))
    s = answer_relevancy(q, "A Pod is a group of containers.", judge, embedder, k=3)
    e = embedder.encode([q, *gen]).numpy()
    expected = float(np.mean(e[1:] @ e[0]))  # RAGAS: mean cosine similarity (unit vectors)
    assert s.status == "scored" and s.score == pytest.approx(expected, abs=1e-5)
    assert 0.3 < s.score < 0.95


def test_relevant_beats_irrelevant(embedder):
    q = "What does the failureThreshold of a probe mean?"
    good = ScriptedJudge('{"questions": ["What is the failureThreshold of a probe?", "What does probe failureThreshold control?", "How many probe failures are allowed?"], "noncommittal": 0}')
    bad = ScriptedJudge('{"questions": ["What colour are bananas?", "Where do bananas grow?", "Are bananas healthy?"], "noncommittal": 0}')
    sg = answer_relevancy(q, "x", good, embedder).score
    sb = answer_relevancy(q, "y", bad, embedder).score
    assert sg > 0.7 and sb < 0.2


def test_noncommittal_empty_and_unparseable(embedder):
    nc = answer_relevancy("What is a Pod?", "I don't know.",
                          ScriptedJudge('{"questions": ["What is a Pod?"], "noncommittal": 1}'), embedder)
    assert nc.score == 0.0 and nc.status == "noncommittal"
    judge = ScriptedJudge("never called")
    empty = answer_relevancy("What is a Pod?", "   ", judge, embedder)
    assert empty.score == 0.0 and empty.status == "empty_answer" and judge.calls == 0
    bad = answer_relevancy("What is a Pod?", "A Pod.", ScriptedJudge("I refuse."), embedder)
    assert bad.score is None and bad.status == "unparseable" and bad.judge_raw == "I refuse."


def test_summary_counts_unparseable_never_drops_it():
    rows = [{"score": 0.9, "status": "scored"}, {"score": 0.5, "status": "scored"},
            {"score": None, "status": "unparseable"}, {"score": 0.0, "status": "noncommittal"}]
    s = summarise(rows, threshold=0.7)
    assert s["n"] == 4 and s["n_scored"] == 3 and s["n_unparseable"] == 1
    assert s["mean"] == pytest.approx(1.4 / 3, abs=1e-6)
    assert s["mean_unparseable_as_zero"] == pytest.approx(1.4 / 4, abs=1e-6)
    assert s["success_rate"] == pytest.approx(0.25)


def test_reference_similarity(embedder):
    from kd.pipeline.relevancy import reference_similarity

    ref = "A Pod is a group of one or more containers with shared storage and network."
    close = reference_similarity("A Pod groups one or more containers that share storage and network.", ref, embedder)
    far = reference_similarity("Bananas are rich in potassium.", ref, embedder)
    assert close > 0.8 and far < 0.2 and reference_similarity("", ref, embedder) == 0.0
    rows = [{"score": 0.9, "status": "scored", "reference_similarity": 0.5},
            {"score": 0.7, "status": "scored", "reference_similarity": 0.3}]
    assert summarise(rows, 0.7)["reference_similarity_mean"] == pytest.approx(0.4)
