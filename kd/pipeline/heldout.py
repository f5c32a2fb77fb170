"""The held-out evaluation set: questions the student is scored on and never trained on.

Before cycle 1 the teacher writes ``per_topic`` questions per topic, each from its own knowledge-base passage, and a
reference answer from that passage; the judge breaks each reference into statements once (for answer
correctness). Those passages are *reserved*: no training question is drawn from them, and a training question
whose MiniLM embedding has cosine >= ``near_duplicate_cosine`` with any held-out question is rejected and another
passage is drawn (``NearDuplicateFilter``). The student is scored on the set at baseline (cycle 0, the base
model) and after every cycle's fine-tune, so the curve measures what transfers to new questions on the same
topics, not memorisation of the training pairs.
"""

from __future__ import annotations

import random
from typing import Sequence

from kd.pipeline import prompts
from kd.pipeline.chat import chat_many
from kd.pipeline.knowledge import KnowledgeBase


def heldout_candidates(kb: KnowledgeBase, topics: Sequence[str], seed: int) -> dict[str, list]:
    """Per topic, its passages in a seeded order (the held-out set takes them from the front)."""
    rng = random.Random(seed * 7_919 + 17)
    groups = kb.by_topic()
    out = {}
    for t in topics:
        ps = list(groups.get(t, []))
        rng.shuffle(ps)
        out[t] = ps
    return out


def make_heldout_questions(kb: KnowledgeBase, topics: Sequence[str], per_topic: int, seed: int, teacher,
                           max_new_tokens: int) -> dict:
    """``{"questions": [{"id": "h<topic>N", "question", "topic", "passage_id", "passage"}], "rejected": [...]}``.

    Draws passages per topic until ``per_topic`` distinct questions parse; fails with the topic named when the
    topic runs out of passages."""
    questions: list[dict] = []
    rejected: list[dict] = []
    seen: set[str] = set()
    for topic, passages in heldout_candidates(kb, topics, seed).items():
        got: list[dict] = []
        pos = 0
        while len(got) < per_topic and pos < len(passages):
            batch = passages[pos:pos + (per_topic - len(got)) + 1]
            pos += len(batch)
            replies = chat_many(teacher, [prompts.question_messages(p.text, p.topic) for p in batch], max_new_tokens)
            for p, raw in zip(batch, replies):
                q = prompts.parse_question(raw)
                if q is None:
                    rejected.append({"passage_id": p.id, "raw": raw, "problem": "no question found"})
                elif prompts.normalise(q) in seen:
                    rejected.append({"passage_id": p.id, "raw": raw, "problem": "repeat of another held-out question"})
                elif len(got) < per_topic:
                    seen.add(prompts.normalise(q))
                    got.append({"id": f"h-{topic}-{len(got) + 1}", "question": q, "topic": topic,
                                "passage_id": p.id, "passage": p.text})
        if len(got) < per_topic:
            raise RuntimeError(f"held-out set: the teacher produced {len(got)} usable questions of {per_topic} for "
                               f"topic {topic!r} ({len(passages)} passages; last problems: {rejected[-3:]})")
        questions.extend(got)
    return {"questions": questions, "rejected": rejected}


class NearDuplicateFilter:
    """Rejects questions too close to a held-out one: cosine of MiniLM embeddings >= ``threshold``."""

    def __init__(self, heldout: Sequence[dict], embedder, threshold: float):
        self.ids = [q["id"] for q in heldout]
        self.embedder = embedder
        self.threshold = float(threshold)
        self.emb = embedder.encode([q["question"] for q in heldout]) if heldout else None

    def closest(self, question: str) -> tuple[str | None, float]:
        """(id, cosine) of the nearest held-out question; (None, -1.0) when the set is empty."""
        if self.emb is None:
            return None, -1.0
        sims = self.emb @ self.embedder.encode([question])[0]
        i = int(sims.argmax())
        return self.ids[i], float(sims[i])

    def problem(self, question: str) -> str | None:
        """Why ``question`` may not be used for training, or None."""
        hid, cos = self.closest(question)
        if hid is not None and cos >= self.threshold:
            return f"near-duplicate of held-out {hid} (cosine {cos:.3f} >= {self.threshold:g})"
        return None
