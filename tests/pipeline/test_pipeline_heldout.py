"""The held-out set: per-topic questions from reserved passages, and the near-duplicate filter that keeps
training questions away from them (real MiniLM embeddings)."""

from __future__ import annotations

import pytest

from kd.pipeline.heldout import NearDuplicateFilter, make_heldout_questions
from kd.pipeline.knowledge import KnowledgeBase, Passage


class EchoTeacher:
    """Writes "What is <first words of the passage>?"; passages starting with "BAD" get no question."""

    def chat(self, messages, max_new_tokens):
        passage = messages[-1]["content"].split('"""\n', 1)[1].split("\n", 1)[0]
        return "no idea" if passage.startswith("BAD") else f"Question: What is {' '.join(passage.split()[:5])}?"


def _kb(n_per_topic: int) -> KnowledgeBase:
    ps = []
    for t in ("pods", "storage"):
        for i in range(n_per_topic):
            text = ("BAD " if i == 0 else "") + f"{t} fact number {i} about kubernetes {t} objects"
            ps.append(Passage(id=f"{t}-{i}", topic=t, source=f"{t}.md", text=text))
    return KnowledgeBase(source="test", passages=ps)


def test_heldout_questions_per_topic_skip_unparseable_and_fail_clearly():
    out = make_heldout_questions(_kb(4), ["pods", "storage"], 2, seed=0, teacher=EchoTeacher(), max_new_tokens=32)
    qs = out["questions"]
    assert [q["topic"] for q in qs] == ["pods", "pods", "storage", "storage"]
    assert all(q["question"].endswith("?") and not q["passage"].startswith("BAD") for q in qs)
    assert len({q["passage_id"] for q in qs}) == 4
    assert make_heldout_questions(_kb(4), ["pods", "storage"], 2, 0, EchoTeacher(), 32) == out  # seeded
    with pytest.raises(RuntimeError, match=r"1 usable questions of 2 for topic 'pods'"):
        make_heldout_questions(_kb(2), ["pods"], 2, seed=0, teacher=EchoTeacher(), max_new_tokens=32)


def test_near_duplicate_filter_rejects_paraphrases_not_other_questions():
    from kd.pipeline.relevancy import Embedder

    try:
        emb = Embedder("packaged:minilm")
    except Exception as exc:  # noqa: BLE001 - the packaged MiniLM is an install-time dependency
        pytest.skip(str(exc))
    f = NearDuplicateFilter([{"id": "h1", "question": "What is a Kubernetes Pod?"}], emb, threshold=0.9)
    assert f.problem("What is a Kubernetes Pod ?") is not None  # same question
    assert "near-duplicate of held-out h1" in f.problem("what is a kubernetes pod?")
    assert f.problem("How does a PersistentVolumeClaim bind to a PersistentVolume?") is None
    hid, cos = f.closest("What are Kubernetes Pods?")
    assert hid == "h1" and 0.8 < cos <= 1.0
