"""Evaluate a bi-encoder on a retrieval split (corpus encode -> FAISS search -> metrics) and rerank with a teacher."""

from __future__ import annotations

import time
from typing import Mapping, Sequence

import torch

from kd.retrieval.metrics.dense_search import build_index, search
from kd.retrieval.metrics.retrieval import Qrels, retrieval_metrics


def dense_retrieve(encoder, corpus: Mapping[str, str], queries: Mapping[str, str], k: int = 100,
                   batch_size: int = 64, doc_embeddings: torch.Tensor | None = None,
                   show_progress: bool = False, index=None) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Rank the corpus for each query with ``encoder`` (a ``BiEncoder``).

    Returns (run: query_id -> top-k doc ids, timings in seconds: ``encode_corpus_s``, ``encode_queries_s``,
    ``build_index_s``, ``search_s``). Pass ``doc_embeddings`` [N, H] (in ``corpus`` order) to skip encoding the
    corpus; ``index`` (``IndexSpec`` or a ``conf/index`` mapping; default flat) picks the FAISS index.
    """
    doc_ids = list(corpus)
    query_ids = list(queries)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if doc_embeddings is None:
        doc_embeddings = encoder.encode([corpus[d] for d in doc_ids], batch_size=batch_size, show_progress=show_progress)
    timings["encode_corpus_s"] = time.perf_counter() - start
    start = time.perf_counter()
    query_embeddings = encoder.encode([queries[q] for q in query_ids], batch_size=batch_size)
    timings["encode_queries_s"] = time.perf_counter() - start
    start = time.perf_counter()
    built = build_index(doc_embeddings, index)
    timings["build_index_s"] = time.perf_counter() - start
    start = time.perf_counter()
    run, _ = search(built, query_embeddings, doc_ids, query_ids, k)
    timings["search_s"] = time.perf_counter() - start
    return run, timings


def evaluate_bi_encoder(encoder, corpus: Mapping[str, str], queries: Mapping[str, str], qrels: Qrels,
                        k: int = 100, batch_size: int = 64, show_progress: bool = False, index=None,
                        doc_embeddings: torch.Tensor | None = None) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Metrics (recall@1/10/100, mrr@10, ndcg@10) of ``encoder`` and its run (top-``k`` per query)."""
    judged = {q: queries[q] for q in qrels if q in queries}
    run, _ = dense_retrieve(encoder, corpus, judged, k=k, batch_size=batch_size, show_progress=show_progress,
                            index=index, doc_embeddings=doc_embeddings)
    return retrieval_metrics(run, qrels), run


def rerank(teacher, corpus: Mapping[str, str], queries: Mapping[str, str], run: Mapping[str, Sequence[str]],
           depth: int = 100, batch_size: int = 64) -> dict[str, list[str]]:
    """Reorder each query's top-``depth`` documents by the cross-encoder's score (best first)."""
    pairs = [(q, d) for q, docs in run.items() for d in list(docs)[:depth]]
    scores = teacher.score([queries[q] for q, _ in pairs], [corpus[d] for _, d in pairs], batch_size=batch_size)
    by_query: dict[str, list[tuple[float, str]]] = {}
    for (q, d), s in zip(pairs, scores.tolist()):
        by_query.setdefault(q, []).append((s, d))
    return {q: [d for _, d in sorted(items, key=lambda x: -x[0])] for q, items in by_query.items()}
