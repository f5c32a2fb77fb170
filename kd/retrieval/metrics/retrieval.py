"""Ranking metrics (recall@k, MRR@k, nDCG@k) on plain dicts, following trec_eval / BEIR conventions.

``run``:   query_id -> document ids ranked best first (at least k of them for exact @k figures).
``qrels``: query_id -> {doc_id: relevance} with relevance > 0 for relevant documents.

Every metric is averaged over the queries of ``qrels`` that have at least one relevant document; a
query missing from ``run`` counts as retrieving nothing (score 0), as in trec_eval.

- recall@k = |relevant in top k| / |relevant|
- MRR@k    = 1 / rank of the first relevant document in the top k (0 if none)
- nDCG@k   = DCG@k / IDCG@k with DCG@k = sum_{r=1..k} rel_r / log2(r + 1) (linear gain, as trec_eval's
  ``ndcg_cut`` that BEIR reports); IDCG sorts the judged relevances in decreasing order.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

Run = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]


def _judged(qrels: Qrels) -> dict[str, dict[str, int]]:
    """Queries with at least one relevant document, each with only its relevant documents."""
    judged = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    if not judged:
        raise ValueError("qrels hold no query with a relevant document")
    return judged


def recall_at_k(run: Run, qrels: Qrels, k: int) -> float:
    """Mean fraction of each query's relevant documents found in its top ``k``."""
    judged = _judged(qrels)
    total = 0.0
    for query_id, relevant in judged.items():
        top = run.get(query_id, ())[:k]
        total += sum(1 for d in top if d in relevant) / len(relevant)
    return total / len(judged)


def mrr_at_k(run: Run, qrels: Qrels, k: int) -> float:
    """Mean reciprocal rank of the first relevant document within the top ``k``."""
    judged = _judged(qrels)
    total = 0.0
    for query_id, relevant in judged.items():
        for rank, doc_id in enumerate(run.get(query_id, ())[:k], start=1):
            if doc_id in relevant:
                total += 1.0 / rank
                break
    return total / len(judged)


def ndcg_at_k(run: Run, qrels: Qrels, k: int) -> float:
    """Mean normalised discounted cumulative gain at ``k`` (linear gain, log2 discount)."""
    judged = _judged(qrels)
    total = 0.0
    for query_id, relevant in judged.items():
        dcg = sum(relevant.get(d, 0) / math.log2(r + 1) for r, d in enumerate(run.get(query_id, ())[:k], start=1))
        ideal = sorted(relevant.values(), reverse=True)[:k]
        idcg = sum(g / math.log2(r + 1) for r, g in enumerate(ideal, start=1))
        total += dcg / idcg
    return total / len(judged)


def retrieval_metrics(run: Run, qrels: Qrels, recall_ks: Sequence[int] = (1, 10, 100)) -> dict[str, float]:
    """The standard report: ``recall@k`` for each k, ``mrr@10`` and ``ndcg@10``."""
    out = {f"recall@{k}": recall_at_k(run, qrels, k) for k in recall_ks}
    out["mrr@10"] = mrr_at_k(run, qrels, 10)
    out["ndcg@10"] = ndcg_at_k(run, qrels, 10)
    return out
