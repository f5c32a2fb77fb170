"""Answer correctness against the teacher's reference, the RAGAS definition implemented here.

RAGAS ``AnswerCorrectness``: (1) a judge LLM breaks the answer and the reference into atomic statements; (2) the
judge sorts them given the question: TP = answer statements supported by the reference, FP = answer statements
not in the reference, FN = reference statements missing from the answer; (3) factual score =
F1 = 2·P·R / (P + R) with P = TP / (TP + FP), R = TP / (TP + FN) (0 when TP = 0); (4) score =
0.75 · F1 + 0.25 · cos(E(answer), E(reference)) (``weights``). All scores are in [0, 1].

A judge reply that cannot be parsed (no JSON list of statements, or no TP/FP/FN object) gives ``score=None`` and
``status="unparseable"``: counted and listed, and counted as 0 in ``mean_unparseable_as_zero``, never dropped and
never NaN. An empty answer scores 0 without a judge call.

Same formula as ragas 0.4.3 ``AnswerCorrectness(weights=[0.75, 0.25], beta=1.0)`` on the same judge outputs and
embeddings (tests/pipeline/test_pipeline_ragas_agreement.py; ``python -m kd.pipeline.ragas_check RUN --metric
correctness`` compares on a run with the real judge). Edge cases that differ: ragas sets F1 = 1 when the judge finds
no statement in either text (kd classifies: 0); for an empty answer or reference ragas embeds " " (kd: score 0 /
similarity 0); ragas gives NaN or raises where kd records ``unparseable``.

Table of inputs (per question):

=============  ===========================================  ======================================
input          what                                         from
=============  ===========================================  ======================================
question       the held-out question (str)                  teacher, before cycle 1
answer         the student's reply (str)                    student (base or with an adapter)
reference      the teacher's reference answer (str)         teacher, from the KB passage
ref_statements statements of the reference (list[str])      judge, once per question (cached)
=============  ===========================================  ======================================
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Sequence

from kd.pipeline.chat import chat_many

DEFAULT_WEIGHTS = (0.75, 0.25)

STATEMENT_PROMPT = (
    "Break the answer below into short, self-contained factual statements (one fact each, no pronouns: name the "
    "thing). Reply with JSON only, as {{\"statements\": [...]}}.\n\n"
    "Example\nQuestion: What does the sun do?\nAnswer: The sun is a star. It produces light through nuclear fusion.\n"
    "{{\"statements\": [\"The sun is a star.\", \"The sun produces light through nuclear fusion.\"]}}\n\n"
    "Question: {question}\nAnswer: {answer}\n"
)

CLASSIFY_PROMPT = (
    "Compare the answer statements with the ground-truth statements for the question. Put each answer statement "
    "in \"TP\" if the ground truth supports it or in \"FP\" if the ground truth does not contain it, and put each "
    "ground-truth statement that the answer does not cover in \"FN\". Reply with JSON only, as "
    "{{\"TP\": [...], \"FP\": [...], \"FN\": [...]}}.\n\n"
    "Example\nQuestion: What powers the sun?\n"
    "Answer statements: [\"The sun is powered by nuclear fission.\", \"The sun's fusion makes light and heat.\"]\n"
    "Ground-truth statements: [\"The sun is powered by nuclear fusion.\", \"Fusion in the sun releases energy as "
    "light and heat.\"]\n"
    "{{\"TP\": [\"The sun's fusion makes light and heat.\"], \"FP\": [\"The sun is powered by nuclear fission.\"], "
    "\"FN\": [\"The sun is powered by nuclear fusion.\"]}}\n\n"
    "Question: {question}\nAnswer statements: {answer_statements}\nGround-truth statements: {reference_statements}\n"
)


def statement_messages(question: str, text: str) -> list[dict]:
    return [{"role": "user", "content": STATEMENT_PROMPT.format(question=question, answer=text)}]


def classify_messages(question: str, answer_statements: Sequence[str], reference_statements: Sequence[str]) -> list[dict]:
    return [{"role": "user", "content": CLASSIFY_PROMPT.format(
        question=question, answer_statements=json.dumps(list(answer_statements)),
        reference_statements=json.dumps(list(reference_statements)))}]


# Statements of the prompts' few-shot examples (every quoted sentence in them, read from the prompts so the two
# cannot drift apart): a small judge sometimes copies them into its reply; never counted.
EXAMPLE_STATEMENTS = frozenset(re.findall(r'"([^"]+\.)"', STATEMENT_PROMPT + CLASSIFY_PROMPT))

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SPACE = re.compile(r"\s*")
_SEPARATOR = re.compile(r"\s*([,\]])")


def _first_json_object(text: str) -> dict | None:
    """The first complete JSON object in ``text`` (a judge may write two, or trailing prose); None if there is none."""
    decoder = json.JSONDecoder()
    pos = text.find("{")
    while pos != -1:
        try:
            obj, _ = decoder.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict):
            return obj
        pos = text.find("{", pos + 1)
    return None


def _complete_strings_of_truncated_list(text: str, key: str) -> list[str] | None:
    """The complete string items of ``"key": [ ...`` in a reply cut off by the token budget; None without the key.

    Only items closed by ``,`` or ``]`` count, so a statement cut mid-sentence is dropped, not half-counted.
    """
    m = re.search(r'"%s"\s*:\s*\[' % re.escape(key), text)
    if m is None:
        return None
    items, pos = [], m.end()
    while True:
        s = _SPACE.match(text, pos).end()
        item = _JSON_STRING.match(text, s)
        if item is None:
            break
        after = _SEPARATOR.match(text, item.end())
        if after is None:
            break
        items.append(json.loads(item.group(0)))
        if after.group(1) == "]":
            break
        pos = after.end()
    return items


def _clean(items: list) -> list[str]:
    """Strings of a statement list: whitespace normalised, empty items, exact repeats and few-shot copies dropped."""
    out: list[str] = []
    for s in items:
        if isinstance(s, dict):  # {"statement": ...} items, as some judges write them
            s = s.get("statement") or s.get("text")
        if isinstance(s, str):
            s = " ".join(s.split())
            if s and s not in EXAMPLE_STATEMENTS and s not in out:
                out.append(s)
    return out


def parse_statements(text: str) -> list[str] | None:
    """The statements of a judge reply; None if unparseable.

    Accepted, in order: the first complete ``{"statements": [...]}`` object; a bare JSON list; a reply cut off inside
    its ``"statements"`` list (its complete items). Items copied from the prompt's example and exact repeats (a small
    judge loops) are dropped.
    """
    obj = _first_json_object(text)
    items = obj.get("statements") if obj is not None else None
    if items is None:
        start = text.find("[")
        if start != -1:
            try:
                items, _ = json.JSONDecoder().raw_decode(text, start)
            except ValueError:
                items = None
    if items is None:
        items = _complete_strings_of_truncated_list(text, "statements")
    if not isinstance(items, list):
        return None
    return _clean(items)


def parse_classification(text: str) -> tuple[int, int, int] | None:
    """(TP, FP, FN) counts of a judge reply (its first complete JSON object); None if unparseable.

    Items copied from the prompt's example are not counted; a reply cut off before its object closes is unparseable
    (its lists' lengths are unknown).
    """
    obj = _first_json_object(text)
    if obj is None:
        return None
    keys = {k.strip().upper(): v for k, v in obj.items() if isinstance(k, str)}
    if not {"TP", "FP", "FN"} <= set(keys):
        return None
    counts = []
    for k in ("TP", "FP", "FN"):
        v = keys[k]
        if isinstance(v, list):
            counts.append(len(_clean(v)))
        elif isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            counts.append(v)
        else:
            return None
    return counts[0], counts[1], counts[2]


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 of the statement classification (0 when there is no true positive)."""
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


@dataclass
class CorrectnessScore:
    score: float | None
    status: str  # scored | empty_answer | unparseable
    f1: float | None
    similarity: float | None
    tp: int | None = None
    fp: int | None = None
    fn: int | None = None
    answer_statements: list[str] = field(default_factory=list)
    problem: str = ""
    judge_raw: list[str] = field(default_factory=list)


def combine(f1: float, similarity: float, weights: Sequence[float] = DEFAULT_WEIGHTS) -> float:
    w_f, w_s = float(weights[0]), float(weights[1])
    return (w_f * f1 + w_s * similarity) / (w_f + w_s)


def reference_statements_batch(questions: Sequence[str], references: Sequence[str], judge,
                               max_new_tokens: int) -> list[dict]:
    """``[{"statements": [...] | None, "raw": str}]`` per reference (None: unparseable; the questions using it fail)."""
    replies = chat_many(judge, [statement_messages(q, r) for q, r in zip(questions, references)], max_new_tokens)
    return [{"statements": parse_statements(raw), "raw": raw} for raw in replies]


def correctness_batch(questions: Sequence[str], answers: Sequence[str], references: Sequence[str],
                      ref_statements: Sequence[list[str] | None], judge, embedder, max_new_tokens: int,
                      weights: Sequence[float] = DEFAULT_WEIGHTS) -> list[CorrectnessScore]:
    """Answer correctness of each answer (all sequences of length n, same order); two batched judge passes.

    ``max_new_tokens`` bounds a statement reply; a TP/FP/FN reply gets twice that (it repeats both statement lists).
    """
    n = len(questions)
    if not (len(answers) == len(references) == len(ref_statements) == n):
        raise ValueError("correctness_batch: questions, answers, references and ref_statements differ in length")
    out: list[CorrectnessScore | None] = [None] * n
    todo = []
    for i in range(n):
        if not answers[i].strip():
            out[i] = CorrectnessScore(0.0, "empty_answer", 0.0, 0.0, 0, 0, 0)
        elif ref_statements[i] is None:
            out[i] = CorrectnessScore(None, "unparseable", None, None, problem="reference statements unparseable")
        else:
            todo.append(i)
    raws = chat_many(judge, [statement_messages(questions[i], answers[i]) for i in todo], max_new_tokens)
    stmts = {i: (parse_statements(raw), raw) for i, raw in zip(todo, raws)}
    classify = [i for i in todo if stmts[i][0] is not None]
    for i in todo:
        if stmts[i][0] is None:
            out[i] = CorrectnessScore(None, "unparseable", None, None, problem="answer statements unparseable",
                                      judge_raw=[stmts[i][1]])
    # the classification copies both statement lists into its reply: twice the budget of one list
    replies = chat_many(judge, [classify_messages(questions[i], stmts[i][0], ref_statements[i]) for i in classify],
                        2 * max_new_tokens)
    sims = {}
    if classify:
        for i in classify:
            emb = embedder.encode([answers[i], references[i]]) if references[i].strip() else None
            sims[i] = 0.0 if emb is None else float(emb[0] @ emb[1])
    for i, raw in zip(classify, replies):
        counts = parse_classification(raw)
        if counts is None:
            out[i] = CorrectnessScore(None, "unparseable", None, round(sims[i], 6), problem="TP/FP/FN unparseable",
                                      answer_statements=stmts[i][0], judge_raw=[stmts[i][1], raw])
            continue
        tp, fp, fn = counts
        f1 = f1_from_counts(tp, fp, fn)
        out[i] = CorrectnessScore(round(combine(f1, sims[i], weights), 6), "scored", round(f1, 6), round(sims[i], 6),
                                  tp, fp, fn, stmts[i][0], judge_raw=[stmts[i][1], raw])
    return [o for o in out if o is not None]


def to_dict(score: CorrectnessScore) -> dict:
    return asdict(score)


def summarise(scores: Sequence[dict]) -> dict:
    values = [s["score"] for s in scores if s["score"] is not None]
    n = len(scores)
    return {"n": n, "n_scored": len(values), "n_unparseable": sum(s["status"] == "unparseable" for s in scores),
            "mean": round(sum(values) / len(values), 6) if values else None,
            "mean_unparseable_as_zero": round(sum(values) / n, 6) if n else None}

