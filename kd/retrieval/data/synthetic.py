"""Synthetic training queries (``kd-generate-queries``' ``queries.jsonl``) mixed into the labelled ones.

File format, one JSON object a line: ``{"_id": str, "text": str, "doc_id": str}`` (other keys, e.g. ``rank``,
are ignored). Each line becomes a training query whose one positive is ``doc_id``; the teacher scores it like
any labelled query (KL / Margin-MSE terms, negative filter). Reading is strict: a duplicate id, an empty text or a
``doc_id`` not in the corpus stops with one ``DataFormatError`` naming file, line and problem.

Mixing (``mix_synthetic``) never lets test data in: a synthetic query whose document is a positive of any
evaluation query, or whose text equals an evaluation query's, is dropped (and counted), whatever file it came
from. Then at most ``synthetic_max`` queries, and at most ``synthetic_ratio`` x the labelled training queries,
are kept (a seeded sample). The synthetic ids are recorded on the splits so that the dev split is carved from the
labelled queries only: with or without synthetic data the dev split, the audit and the calibration are the same.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from dataclasses import dataclass
from typing import Mapping

from kd.errors import ConfigError, DataFormatError
from kd.retrieval.data.beir import check_string, iter_lines, parse_json_object

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticQuery:
    query_id: str
    text: str
    doc_id: str


def load_synthetic(path: str | os.PathLike, corpus: Mapping[str, str]) -> list[SyntheticQuery]:
    """Read a synthetic queries file; every ``doc_id`` must be in ``corpus`` (the whole corpus, before any subset)."""
    queries: list[SyntheticQuery] = []
    first_line: dict[str, int] = {}
    for line, text in iter_lines(path, "a JSON Lines file of {_id, text, doc_id} objects (kd-generate-queries)"):
        obj = parse_json_object(path, line, text)
        query_id = check_string(path, line, obj, "_id")
        if query_id in first_line:
            raise DataFormatError(path, line, f"duplicate _id {query_id!r} (first on line {first_line[query_id]})")
        body = check_string(path, line, obj, "text")
        doc_id = check_string(path, line, obj, "doc_id")
        if doc_id not in corpus:
            raise DataFormatError(path, line, f"doc_id {doc_id!r} is not in the corpus ({len(corpus)} documents)")
        first_line[query_id] = line
        queries.append(SyntheticQuery(query_id, body, doc_id))
    return queries


def _normalise(text: str) -> str:
    from kd.retrieval.synthetic.prompts import normalise

    return normalise(text)


def mix_synthetic(splits, synthetic: list[SyntheticQuery], test_qrels: Mapping[str, Mapping[str, int]],
                  test_queries: Mapping[str, str], max_count: int | None = None, ratio: float | None = None,
                  seed: int = 0, source: str = ""):
    """``splits`` with the allowed synthetic queries added to the training queries and qrels.

    ``test_qrels`` / ``test_queries``: every evaluation query (not a subset). Returns new splits whose
    ``synthetic_ids`` / ``synthetic_info`` say what was added and what was dropped, and why.
    """
    if max_count is not None and (isinstance(max_count, bool) or int(max_count) != max_count or max_count < 0):
        raise ConfigError(f"data.synthetic_max must be an integer >= 0 or null, got {max_count!r}")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0):
        raise ConfigError(f"data.synthetic_ratio must be a number >= 0 or null, got {ratio!r}")
    test_docs = {d for docs in test_qrels.values() for d, r in docs.items() if r > 0}
    test_texts = {_normalise(t) for t in test_queries.values()}
    taken = set(splits.train_queries)
    dropped = {"test_positive": 0, "test_query_text": 0, "not_in_corpus_subset": 0, "id_clash": 0}
    allowed: list[SyntheticQuery] = []
    for q in synthetic:
        if q.doc_id in test_docs:
            dropped["test_positive"] += 1
        elif _normalise(q.text) in test_texts:
            dropped["test_query_text"] += 1
        elif q.doc_id not in splits.corpus:
            dropped["not_in_corpus_subset"] += 1
        elif q.query_id in taken:
            dropped["id_clash"] += 1
        else:
            allowed.append(q)
    labelled = len(splits.train_qrels)
    cap = len(allowed)
    if ratio is not None:
        cap = min(cap, round(float(ratio) * labelled))
    if max_count is not None:
        cap = min(cap, int(max_count))
    chosen = allowed if cap >= len(allowed) else sorted(random.Random(seed).sample(allowed, cap),
                                                        key=allowed.index)
    if dropped["test_positive"] or dropped["test_query_text"]:
        log.warning("synthetic queries %s: dropped %d whose document is a test positive and %d that repeat a test "
                    "query", source, dropped["test_positive"], dropped["test_query_text"])
    info = {"file": str(source), "in_file": len(synthetic), "allowed": len(allowed), "used": len(chosen),
            "labelled_train_queries": labelled, "max": max_count, "ratio": ratio, "dropped": dropped}
    log.info("synthetic queries: %d of %d in %s used next to %d labelled training queries", len(chosen),
             len(synthetic), source, labelled)
    train_queries = dict(splits.train_queries)
    train_qrels = dict(splits.train_qrels)
    for q in chosen:
        train_queries[q.query_id] = q.text
        train_qrels[q.query_id] = {q.doc_id: 1}
    triplets = list(splits.triplets)
    if triplets:  # with triplets the qrels are not read: the synthetic queries become triplets without negatives
        from kd.retrieval.data.triplets import Triplet

        triplets += [Triplet(q.query_id, q.doc_id, ()) for q in chosen]
    return dataclasses.replace(splits, train_queries=train_queries, train_qrels=train_qrels, triplets=triplets,
                               synthetic_ids=frozenset(q.query_id for q in chosen), synthetic_info=info)
