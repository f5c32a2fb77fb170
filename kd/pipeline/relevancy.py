"""Answer relevancy, the RAGAS definition implemented here.

For an answer to a question, an LLM (the judge: by default the teacher) writes ``k`` questions that the answer
responds to and flags whether the answer is non-committal ("I don't know", evasive, vague). The score is the mean
cosine similarity between the embeddings of those questions and of the original question, and 0 when the answer
is non-committal (RAGAS ``AnswerRelevancy``: ``mean(cos(E(q_i), E(q))) * (1 - noncommittal)``). RAGAS samples the
judge ``strictness`` times; here one greedy call asks for ``k`` different questions, which keeps the score
deterministic for resume.

Only generated items that are questions (contain "?") are used: a judge that echoes the answer back would
otherwise inflate the score. A judge reply with no question in it, or that cannot be parsed, gets ``score=None`` and ``status="unparseable"``: it is counted and reported
(``n_unparseable``, and a mean that counts it as 0), never dropped. An empty answer scores 0 without a judge call.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Sequence

JUDGE_PROMPT = (
    "Generate {k} different questions that the given answer responds to, and say whether the answer is "
    "noncommittal. Give noncommittal as 1 if the answer is noncommittal (evasive, vague or ambiguous, for example "
    "\"I don't know\" or \"I'm not sure\") and 0 if the answer is committal. Each question must end with a "
    "question mark; do not copy the answer.\n"
    "Reply with JSON only.\n\n"
    "Example\nAnswer: Albert Einstein was born in Germany.\n"
    "{{\"questions\": [\"Where was Albert Einstein born?\", \"In which country was Einstein born?\"], \"noncommittal\": 0}}\n\n"
    "Example\nAnswer: I don't know about the feature of the smartphone invented in 2023.\n"
    "{{\"questions\": [\"What was the feature of the smartphone invented in 2023?\"], \"noncommittal\": 1}}\n\n"
    "Answer: {answer}\n"
)


def judge_messages(answer: str, k: int) -> list[dict]:
    return [{"role": "user", "content": JUDGE_PROMPT.format(k=k, answer=answer)}]


@dataclass
class JudgeParse:
    questions: list[str] = field(default_factory=list)
    noncommittal: int = 0
    mode: str = "json"  # json | json_partial (truncated JSON) | lines | unparseable


def _strip_item(q: str) -> str:
    return re.sub(r"^\s*(?:[-*]|\d+[.)])\s*", "", q).strip().strip("\"'").strip()


def parse_judge(text: str, k: int) -> JudgeParse:
    """Questions + non-committal flag from the judge's reply: JSON first, then question lines."""
    nc_match = re.search(r"noncommittal\"?\s*[:=]\s*\"?([01])", text, re.I)
    noncommittal = int(nc_match.group(1)) if nc_match else 0
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            obj = json.loads(text[start:end + 1])
            qs = obj.get("questions") if isinstance(obj, dict) else None
            if isinstance(qs, str):
                qs = [qs]
            if obj.get("question") and not qs:
                qs = [obj["question"]]
            if isinstance(qs, list):
                # only questions count: a judge that echoes the answer back has not done its job
                qs = [_strip_item(str(q)) for q in qs if isinstance(q, str) and "?" in q]
                nc = obj.get("noncommittal", noncommittal)
                nc = 1 if str(nc).strip() in ("1", "true", "True") else 0
                if qs:
                    return JudgeParse(qs[:k], nc, "json")
        except (ValueError, AttributeError):
            pass
    # a reply cut off by the token limit (or otherwise broken JSON): the quoted questions it already holds
    quoted = [q.strip() for q in re.findall(r'"((?:[^"\\]|\\.){5,300}?\?)"', text)]
    if quoted:
        return JudgeParse(quoted[:k], noncommittal, "json_partial")
    lines = [_strip_item(l) for l in text.splitlines()]
    qs = [l.rstrip(",").strip("\"") for l in lines if l.endswith("?") or l.rstrip("\",").endswith("?")]
    qs = [q for q in qs if len(q) >= 5 and "noncommittal" not in q.lower()]
    if qs:
        return JudgeParse(qs[:k], noncommittal, "lines")
    return JudgeParse([], noncommittal, "unparseable")


class Embedder:
    """Sentence embeddings: mean pooling + L2 norm over a HF encoder (the packaged MiniLM by default)."""

    def __init__(self, name_or_path: str = "packaged:minilm", device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from kd.packaged_models import resolve_model

        path = resolve_model(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32).to(device).eval()
        self.device = device

    def encode(self, texts: Sequence[str]):
        import torch

        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt").to(self.device)
        with torch.no_grad():
            hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


@dataclass
class RelevancyScore:
    score: float | None
    status: str  # scored | noncommittal | empty_answer | unparseable
    generated_questions: list[str]
    noncommittal: int
    parse_mode: str
    judge_raw: str


def score_from_parse(question: str, parsed: JudgeParse, embedder: Embedder) -> float:
    emb = embedder.encode([question, *parsed.questions])
    return float((emb[1:] @ emb[0]).mean().item())


def empty_answer_score() -> RelevancyScore:
    """An empty answer scores 0 without a judge call (ragas would ask the judge about nothing)."""
    return RelevancyScore(0.0, "empty_answer", [], 1, "none", "")


def answer_relevancy(question: str, answer: str, judge, embedder: Embedder, k: int = 3,
                     max_new_tokens: int = 128) -> RelevancyScore:
    """RAGAS answer relevancy of ``answer`` to ``question`` (``judge.chat`` writes the questions)."""
    if not answer.strip():
        return empty_answer_score()
    return score_reply(question, judge.chat(judge_messages(answer, k), max_new_tokens), embedder, k)


def answer_relevancy_batch(questions: Sequence[str], answers: Sequence[str], judge, embedder: Embedder, k: int = 3,
                           max_new_tokens: int = 128) -> list[RelevancyScore]:
    """``answer_relevancy`` for many (question, answer) pairs, the judge called in batches (same scores)."""
    from kd.pipeline.chat import chat_many

    todo = [i for i, a in enumerate(answers) if a.strip()]
    replies = dict(zip(todo, chat_many(judge, [judge_messages(answers[i], k) for i in todo], max_new_tokens)))
    return [score_reply(q, replies[i], embedder, k) if i in replies else empty_answer_score()
            for i, q in enumerate(questions)]


def score_reply(question: str, raw: str, embedder: Embedder, k: int) -> RelevancyScore:
    """The relevancy score of one judge reply ``raw`` about an answer to ``question``."""
    parsed = parse_judge(raw, k)
    if parsed.mode == "unparseable":
        return RelevancyScore(None, "unparseable", [], parsed.noncommittal, parsed.mode, raw)
    if parsed.noncommittal:
        return RelevancyScore(0.0, "noncommittal", parsed.questions, 1, parsed.mode, raw)
    return RelevancyScore(round(score_from_parse(question, parsed, embedder), 6), "scored", parsed.questions, 0,
                          parsed.mode, raw)


def reference_similarity(answer: str, reference: str, embedder: Embedder) -> float:
    """Cosine similarity of the answer's and the teacher reference's embeddings (0 for an empty answer).

    Not part of RAGAS answer relevancy (which ignores correctness): a complementary view of whether the student
    moves toward the teacher's answers."""
    if not answer.strip() or not reference.strip():
        return 0.0
    emb = embedder.encode([answer, reference])
    return round(float(emb[0] @ emb[1]), 6)


def summarise(scores: Sequence[dict], threshold: float) -> dict:
    """Mean over scored answers, mean counting unparseable as 0, success rate, counts by status."""
    values = [s["score"] for s in scores if s["score"] is not None]
    n = len(scores)
    counts: dict[str, int] = {}
    for s in scores:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    out = {
        "n": n,
        "n_scored": len(values),
        "n_unparseable": counts.get("unparseable", 0),
        "status_counts": counts,
        "mean": round(sum(values) / len(values), 6) if values else None,
        "mean_unparseable_as_zero": round(sum(values) / n, 6) if n else None,
        "success_rate": round(sum(v >= threshold for v in values) / n, 6) if n else None,
        "threshold": threshold,
    }
    sims = [s["reference_similarity"] for s in scores if s.get("reference_similarity") is not None]
    if sims:
        out["reference_similarity_mean"] = round(sum(sims) / len(sims), 6)
    return out


def to_dict(score: RelevancyScore) -> dict:
    return asdict(score)
