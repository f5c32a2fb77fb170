"""Labeled training triplets (query, positive, negatives) from TSV or JSON Lines files.

Formats (chosen by the file extension):

* ``.tsv``: three tab-separated columns ``query<TAB>positive<TAB>negative``; an optional header line
  ``query<TAB>positive<TAB>negative`` first.
* ``.jsonl``: one object a line, ``{"query": str, "positive": str, "negative": str}`` or
  ``{"query": str, "positive": str, "negatives": [str, ...]}`` (the list may be empty; with neither key
  the triplet has no negatives). Other keys are rejected, so a misspelt key is not silently ignored.

Fields are either ids (resolved against a corpus and queries) or texts (given ids derived from the
text, so the same text always gets the same id). Errors raise one
:class:`~kd.errors.DataFormatError` naming the file and 1-based line.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from kd.retrieval.data.beir import check_string, check_string_value, iter_lines, parse_json_object
from kd.errors import DataFormatError

TSV_HEADER = ("query", "positive", "negative")
JSONL_KEYS = frozenset({"query", "positive", "negative", "negatives"})
BY_MODES = ("auto", "id", "text")


@dataclass(frozen=True)
class Triplet:
    """One training example: a query id, one relevant doc id and zero or more non-relevant doc ids."""

    query_id: str
    positive_id: str
    negative_ids: tuple[str, ...]


def text_id(prefix: str, text: str) -> str:
    """Deterministic id for a text: ``prefix`` + the first 16 hex digits of sha1(UTF-8 text)."""
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def query_text_id(text: str) -> str:
    """Id given to a query read as text: ``"q-" + sha1(text)[:16]``."""
    return text_id("q-", text)


def doc_text_id(text: str) -> str:
    """Id given to a document read as text: ``"d-" + sha1(text)[:16]``."""
    return text_id("d-", text)


# ------------------------------------------------------------------------------------------ raw rows


def _read_tsv(path: Path) -> list[tuple[int, str, str, tuple[str, ...]]]:
    rows = []
    first = True
    for line, text in iter_lines(path, "a TSV of query<TAB>positive<TAB>negative"):
        fields = text.split("\t")
        if first:
            first = False
            if tuple(f.strip() for f in fields) == TSV_HEADER:
                continue
        if len(fields) != 3:
            raise DataFormatError(
                path, line, f"expected 3 tab-separated columns (query, positive, negative), got {len(fields)}"
            )
        for name, value in zip(TSV_HEADER, fields):
            if not value.strip():
                raise DataFormatError(path, line, f"empty {name} column")
        rows.append((line, fields[0], fields[1], (fields[2],)))
    if not rows:
        raise DataFormatError(path, None, "no triplets after the header (file is empty)")
    return rows


def _read_jsonl(path: Path) -> list[tuple[int, str, str, tuple[str, ...]]]:
    rows = []
    for line, text in iter_lines(path, "a JSON Lines file of {query, positive, negative(s)} objects"):
        obj = parse_json_object(path, line, text)
        unknown = sorted(set(obj) - JSONL_KEYS)
        if unknown:
            raise DataFormatError(path, line, f"unknown key(s) {unknown}; expected {sorted(JSONL_KEYS)}")
        query = check_string(path, line, obj, "query")
        positive = check_string(path, line, obj, "positive")
        if "negative" in obj and "negatives" in obj:
            raise DataFormatError(path, line, "give either 'negative' or 'negatives', not both")
        negatives: tuple[str, ...] = ()
        if "negative" in obj:
            negatives = (check_string(path, line, obj, "negative"),)
        elif "negatives" in obj:
            value: Any = obj["negatives"]
            if not isinstance(value, list):
                raise DataFormatError(path, line, "field 'negatives' must be an array of strings")
            negatives = tuple(
                check_string_value(path, line, item, f"negatives[{i}]") for i, item in enumerate(value)
            )
        rows.append((line, query, positive, negatives))
    return rows


# ---------------------------------------------------------------------------------------------- load


def load_triplets(
    path: str | os.PathLike,
    corpus: Mapping[str, str] | None = None,
    queries: Mapping[str, str] | None = None,
    by: str = "auto",
) -> tuple[list[Triplet], dict[str, str], dict[str, str]]:
    """Read triplets; return ``(triplets, merged_corpus, merged_queries)`` (inputs are not modified).

    by="id":   fields are ids; every one must be in ``queries`` (query) or ``corpus`` (docs).
    by="text": fields are texts; each gets id ``"q-"``/``"d-"`` + sha1(text)[:16] and is added to the
               copies of ``queries``/``corpus`` (the same text gives the same id, stored once).
    by="auto": "id" when every field of the first record resolves against ``corpus``/``queries``
               (both given), else "text".
    """
    if by not in BY_MODES:
        raise ValueError(f"by must be one of {BY_MODES}, got {by!r}")
    if by == "id" and (corpus is None or queries is None):
        raise ValueError("by='id' needs both corpus and queries to resolve ids against")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".tsv":
        rows = _read_tsv(p)
    elif suffix == ".jsonl":
        rows = _read_jsonl(p)
    else:
        raise DataFormatError(
            p, None, f"unsupported triplet file extension {p.suffix!r} (expected .tsv or .jsonl)"
        )
    if not rows:
        raise DataFormatError(p, None, "no triplets in file")

    merged_corpus: dict[str, str] = dict(corpus or {})
    merged_queries: dict[str, str] = dict(queries or {})
    if by == "auto":
        _, q, pos, negs = rows[0]
        resolves = (
            corpus is not None and queries is not None
            and q in queries and pos in corpus and all(n in corpus for n in negs)
        )
        by = "id" if resolves else "text"

    triplets: list[Triplet] = []
    if by == "id":
        for line, q, pos, negs in rows:
            if q not in merged_queries:
                raise DataFormatError(p, line, f"unknown query id {q!r} (not in the queries)")
            for name, doc_id in [("positive", pos)] + [("negative", n) for n in negs]:
                if doc_id not in merged_corpus:
                    raise DataFormatError(p, line, f"unknown {name} doc id {doc_id!r} (not in the corpus)")
            triplets.append(Triplet(q, pos, tuple(negs)))
        return triplets, merged_corpus, merged_queries

    for line, q, pos, negs in rows:
        query_id = _add_text(p, line, merged_queries, query_text_id(q), q, "query")
        positive_id = _add_text(p, line, merged_corpus, doc_text_id(pos), pos, "document")
        negative_ids = tuple(_add_text(p, line, merged_corpus, doc_text_id(n), n, "document") for n in negs)
        triplets.append(Triplet(query_id, positive_id, negative_ids))
    return triplets, merged_corpus, merged_queries


def _add_text(path: Path, line: int, table: dict[str, str], new_id: str, text: str, kind: str) -> str:
    """Store ``text`` under ``new_id`` in ``table``; the id must be free or already hold this text."""
    existing = table.get(new_id)
    if existing is None:
        table[new_id] = text
    elif existing != text:
        raise DataFormatError(path, line, f"{kind} id {new_id!r} derived from this text already names a "
                                          f"different text")
    return new_id
