"""Answer correctness (the RAGAS definition): statement parsing, TP/FP/FN -> F1, the 0.75/0.25 blend with
similarity, and unparseable judge replies listed as failures (score None, counted as 0 upstream), never NaN."""

from __future__ import annotations

import json
import math

import pytest

from kd.pipeline import correctness as C


class ScriptedJudge:
    """``chat`` answers statement prompts with the answer's sentences and classification prompts from a table."""

    def __init__(self, classify: dict[str, str], broken_statements: set[str] = frozenset()):
        self.classify = classify
        self.broken = broken_statements
        self.calls = 0

    def chat(self, messages, max_new_tokens):
        self.calls += 1
        user = messages[-1]["content"]
        if user.startswith("Break the answer"):
            answer = user.rsplit("Answer:", 1)[1].strip()
            if answer in self.broken:
                return "Sure! Here are the statements: the answer is fine"
            return json.dumps({"statements": [s.strip() for s in answer.split(".") if s.strip()]})
        for key, reply in self.classify.items():
            if key in user:
                return reply
        return "no idea"


class FakeEmbedder:
    def encode(self, texts):
        import torch

        vecs = [torch.tensor([1.0, 0.0]) if "Pod" in t else torch.tensor([0.0, 1.0]) for t in texts]
        return torch.stack(vecs)


def test_f1_and_blend():
    assert C.f1_from_counts(2, 0, 0) == 1.0
    assert C.f1_from_counts(0, 3, 1) == 0.0
    assert C.f1_from_counts(1, 1, 1) == pytest.approx(0.5)
    assert C.combine(1.0, 0.0) == pytest.approx(0.75) and C.combine(0.0, 1.0) == pytest.approx(0.25)


def test_parsers():
    assert C.parse_statements('{"statements": ["A Pod runs containers.", " "]}') == ["A Pod runs containers."]
    assert C.parse_statements('["x is y", {"statement": "z is w"}]') == ["x is y", "z is w"]
    assert C.parse_statements("I think the answer is good") is None
    assert C.parse_classification('{"TP": ["a"], "FP": [], "FN": ["b", "c"]}') == (1, 0, 2)
    assert C.parse_classification('{"tp": 2, "fp": 1, "fn": 0}') == (2, 1, 0)
    assert C.parse_classification('{"TP": ["a"]}') is None
    assert C.parse_classification("TP: a") is None


# Replies of the 0.5B judge in the design run (benchmarks/PIPELINE.md), shortened: each was unparseable or miscounted
# before the parser took the first complete object, the complete items of a cut-off list and dropped few-shot copies.
def test_two_objects_in_one_reply_take_the_first():
    reply = ('{"TP": ["A NetworkPolicy governs traffic."], "FP": [], "FN": ["It selects pods."]}\n\n'
             '{"TP": ["A NetworkPolicy governs traffic."], "FP": ["x"], "FN": []}')
    assert C.parse_classification(reply) == (1, 0, 1)
    assert C.parse_statements('{"statements": ["a is b"]} and also {"statements": ["c is d"]}') == ["a is b"]


def test_a_statement_list_cut_off_by_the_token_budget_keeps_its_complete_items():
    cut = '{"statements": ["The default period is 10 seconds.", "The probe restarts the \\"app\\" container.", "The pro'
    assert C.parse_statements(cut) == ["The default period is 10 seconds.", 'The probe restarts the "app" container.']
    assert C.parse_statements('{"statements": ["The pro') == []  # no complete item: parsed, nothing to count
    assert C.parse_statements('{"answer": "The pro') is None


def test_repeats_and_copies_of_the_prompt_example_are_not_counted():
    looped = json.dumps({"statements": ["The syntax is:"] * 4 + ["The sun is a star."]})
    assert C.parse_statements(looped) == ["The syntax is:"]
    copied = json.dumps({"TP": ["The sun is a star.", "The sun produces light through nuclear fusion.", "A PVC binds."],
                         "FP": ["The sun is powered by nuclear fission.", "Fusion in the sun releases energy as light "
                                "and heat."], "FN": ["The sun is powered by nuclear fusion."]})
    assert C.parse_classification(copied) == (1, 0, 0)


def test_a_classification_cut_off_before_its_object_closes_is_unparseable():
    assert C.parse_classification('{"TP": ["a is b"], "FP": ["c is d"], "FN": ["e is') is None


def test_batch_scores_right_wrong_empty_and_unparseable():
    questions = ["What is a Pod?"] * 4
    references = ["A Pod is a group of containers."] * 4
    ref_statements = [["A Pod is a group of containers."]] * 4
    answers = ["A Pod is a group of containers.", "A Service exposes apps.", "", "garbled"]
    judge = ScriptedJudge({'Answer statements: ["A Pod is a group of containers"]': '{"TP": ["x"], "FP": [], "FN": []}',
                           'Answer statements: ["A Service exposes apps"]': '{"TP": [], "FP": ["x"], "FN": ["y"]}'},
                          broken_statements={"garbled"})
    scores = C.correctness_batch(questions, answers, references, ref_statements, judge, FakeEmbedder(), 64)
    right, wrong, empty, broken = scores
    assert right.status == "scored" and right.score == pytest.approx(1.0)  # F1 1, similarity 1
    assert wrong.status == "scored" and wrong.score == pytest.approx(0.0)  # F1 0, similarity 0
    assert empty.status == "empty_answer" and empty.score == 0.0
    assert broken.status == "unparseable" and broken.score is None and "answer statements" in broken.problem
    assert not any(isinstance(s.score, float) and math.isnan(s.score) for s in scores)
    assert judge.calls == 3 + 2  # statements of the 3 non-empty answers, TP/FP/FN of the 2 that parsed
    summary = C.summarise([C.to_dict(s) for s in scores])
    assert summary["n_unparseable"] == 1 and summary["mean_unparseable_as_zero"] == pytest.approx(0.25)


def test_unparseable_reference_statements_fail_the_question_without_a_judge_call():
    judge = ScriptedJudge({})
    (s,) = C.correctness_batch(["q?"], ["A Pod."], ["ref"], [None], judge, FakeEmbedder(), 64)
    assert s.status == "unparseable" and "reference statements" in s.problem and judge.calls == 0
