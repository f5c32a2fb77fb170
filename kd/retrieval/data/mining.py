"""Hard-negative mining: candidate rankings from BM25 or the student's dense index, filtered by the teacher.

A mined negative is a highly ranked document that is not a known positive of the query. Highly ranked
non-positives are sometimes unlabelled positives (false negatives), so when a teacher is given, candidates
it scores at least as relevant as the query's positive (minus ``false_negative_margin``) are dropped.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

# (query texts [N], doc texts [N]) -> teacher sigmoid scores [N]
TeacherScorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


def bm25_rankings(corpus: Mapping[str, str], queries: Mapping[str, str], depth: int) -> dict[str, list[str]]:
    """Top-``depth`` corpus ids per query by BM25 (``bm25s``, English stop words removed)."""
    import bm25s

    doc_ids = list(corpus)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([corpus[d] for d in doc_ids], stopwords="en", show_progress=False),
                    show_progress=False)
    query_ids = list(queries)
    depth = min(depth, len(doc_ids))
    tokens = bm25s.tokenize([queries[q] for q in query_ids], stopwords="en", show_progress=False)
    rows, _ = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    return {q: [doc_ids[j] for j in np.asarray(row).tolist()] for q, row in zip(query_ids, rows)}


def dense_rankings(encoder, corpus: Mapping[str, str], queries: Mapping[str, str], depth: int,
                   batch_size: int = 64) -> dict[str, list[str]]:
    """Top-``depth`` corpus ids per query by the bi-encoder's cosine similarity (FAISS flat index)."""
    from kd.retrieval.metrics.evaluate import dense_retrieve

    run, _ = dense_retrieve(encoder, corpus, queries, k=depth, batch_size=batch_size)
    return run


def teacher_rankings(teacher, corpus: Mapping[str, str], queries: Mapping[str, str], depth: int,
                     chunk: int = 256) -> dict[str, list[str]]:
    """Top-``depth`` corpus ids per query by a corpus teacher's own scores (``teacher.corpus_scores`` [Q, N])."""
    doc_ids = list(corpus)
    teacher.index(corpus)  # a no-op when the teacher already indexed these texts
    query_ids = list(queries)
    out: dict[str, list[str]] = {}
    for start in range(0, len(query_ids), chunk):
        ids = query_ids[start : start + chunk]
        scores = teacher.corpus_scores([queries[q] for q in ids])
        top = scores.topk(min(depth, len(doc_ids)), dim=1).indices.tolist()
        out.update({q: [doc_ids[j] for j in row] for q, row in zip(ids, top)})
    return out


def mine_hard_negatives(
    examples: Sequence[tuple[str, str]],
    rankings: Mapping[str, Sequence[str]],
    positives: Mapping[str, set[str]],
    count: int,
    queries: Mapping[str, str] | None = None,
    corpus: Mapping[str, str] | None = None,
    teacher: TeacherScorer | None = None,
    false_negative_margin: float = 0.0,
) -> list[list[str]]:
    """Pick up to ``count`` hard negatives for each (query_id, positive_id) example.

    Candidates are taken in ranking order, skipping every known positive of the query. With ``teacher``
    (and ``queries``/``corpus`` for the texts), a candidate is dropped when
    ``teacher(q, cand) >= teacher(q, positive) - false_negative_margin``. Returns one list per example.
    """
    if teacher is None:
        return [[d for d in rankings.get(q, ()) if d not in positives.get(q, set())][:count] for q, _ in examples]
    if queries is None or corpus is None:
        raise ValueError("the teacher filter needs the query and corpus texts")
    pool = [[d for d in rankings.get(q, ()) if d not in positives.get(q, set())][: 2 * count] for q, _ in examples]
    pair_q: list[str] = []
    pair_d: list[str] = []
    for (q, p), cands in zip(examples, pool):
        for d in [p, *cands]:
            pair_q.append(queries[q])
            pair_d.append(corpus[d])
    scores = list(teacher(pair_q, pair_d))
    out: list[list[str]] = []
    offset = 0
    for cands in pool:
        positive_score = scores[offset]
        kept = [d for d, s in zip(cands, scores[offset + 1 : offset + 1 + len(cands)])
                if s < positive_score - false_negative_margin]
        out.append(kept[:count])
        offset += 1 + len(cands)
    return out
