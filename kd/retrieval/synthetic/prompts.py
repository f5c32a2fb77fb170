"""Prompts that ask the LLM teacher for search queries about one document, and the parser of its reply.

Three styles: ``query`` (short search queries, any corpus), ``claim`` (one-sentence scientific claims the
document supports, the form of SciFact's queries) and ``paraphrase`` (claims restated in the teacher's own words:
``verbatim_share`` measures how much of a query is copied from its document). The prompt sees the document only: no example
queries, so no test query can leak into a synthetic one through the prompt.
"""

from __future__ import annotations

import re

SYSTEM = "You write search queries that a document answers, for training a search engine."

INSTRUCTIONS = {
    "query": ("Write {k} different short search queries (at most 15 words each) that this document answers. Each query must make sense "
              "without the document. One query per line, numbered 1., 2., ...; nothing else."),
    "claim": ("Write {k} different short scientific claims (one sentence of at most 20 words each) that this "
              "abstract supports, stated as someone searching the literature would state them. Each claim must make sense without "
              "the abstract. One claim per line, numbered 1., 2., ...; nothing else."),
    # SciFact's claims restate a finding in other words; a small teacher asked for "claims" copies a sentence
    "paraphrase": ("Write {k} different short scientific claims (at most 15 words each) that this abstract supports. "
                   "Restate each finding in your own words, as a reader would summarise it: do not copy sentences or "
                   "long phrases from the abstract. Each claim must make sense without the abstract. One claim per "
                   "line, numbered 1., 2., ...; nothing else."),
}
STYLES = tuple(INSTRUCTIONS)

MIN_CHARS = 10
MAX_CHARS = 300
MIN_WORDS = 3

_REFUSAL = re.compile(r"^(?:i (?:don'?t|do not|cannot|can'?t|am not)|sorry|as an ai|unfortunately)\b", re.I)
_FIRST_SENTENCE = re.compile(r"(.+?[a-z0-9)\]%][.!?])\s+(?=[A-Z(\[])")
_END = ".?!)\"'"
_NUMBERING = re.compile(r"^\s*(?:[-*•>]+|\(?\d{1,2}[.):]|\[\d{1,2}\])\s*")
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:search\s+)?(?:query|queries|claim|question)\s*\d*\s*[:.-]\s*(?:\*\*)?\s*", re.I)


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters at a word boundary (whitespace collapsed)."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def query_messages(document: str, k: int, style: str = "claim", max_chars: int = 1200) -> list[dict]:
    """Chat messages asking for ``k`` queries about ``document`` (cut to ``max_chars``)."""
    if style not in INSTRUCTIONS:
        raise ValueError(f"prompt style must be one of {', '.join(STYLES)}, got {style!r}")
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f'Document:\n"""\n{truncate(document, max_chars)}\n"""\n\n'
                                    + INSTRUCTIONS[style].format(k=k)},
    ]


def normalise(text: str) -> str:
    """Lower case, letters and digits only, single spaces: the key for duplicates and the test-query check."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def verbatim_share(query: str, document: str) -> float:
    """Share of the query's words (``normalise``d) in the longest run of consecutive words that the document also
    contains, in [0, 1]: 1.0 for a sentence copied from the document, near 0 for a paraphrase."""
    q, d = normalise(query).split(), normalise(document).split()
    if not q or not d:
        return 0.0
    best, prev = 0, [0] * (len(d) + 1)
    for qw in q:
        cur = [0] * (len(d) + 1)
        for j, dw in enumerate(d, 1):
            if qw == dw:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best / len(q)


def parse_queries(reply: str, k: int) -> list[str]:
    """Up to ``k`` distinct queries from a reply: one per line, numbering / bullets / "Query:" labels / quotes
    removed; a line holding several sentences is cut to its first; lines shorter than 3 words or 10 characters, longer than 300, or repeating an earlier one are
    dropped. A last line without final punctuation after good lines that all have it is taken as cut off by the
    token limit and dropped. Returns ``[]`` when the reply holds no query."""
    out: list[str] = []
    seen: set[str] = set()
    lines = [line for line in reply.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        text = _LABEL.sub("", _NUMBERING.sub("", line))
        text = _LABEL.sub("", text).strip().strip("*\"'`“”").strip()
        first = _FIRST_SENTENCE.match(text)  # a line that runs on (copied text) is cut to its first sentence
        if first and len(first.group(1).split()) >= MIN_WORDS:
            text = first.group(1)
        if len(text) < MIN_CHARS or len(text) > MAX_CHARS or len(text.split()) < MIN_WORDS:
            continue
        if text.endswith(":") or _REFUSAL.match(text):  # "Here are three claims:", "I don't know."
            continue
        if i == len(lines) - 1 and out and text[-1] not in _END and all(q[-1] in _END for q in out):
            continue
        key = normalise(text)
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out[:k]
