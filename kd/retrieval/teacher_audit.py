"""Before distillation: is the teacher better than the student? Audited on the dev split, never on test.

Both rank the same candidate pools: each dev query's top ``depth`` BM25 documents. The teacher orders a pool by
its scores, the untrained student by cosine similarity; nDCG@10 and recall@10 against the dev qrels say which is
the better ranker. The same teacher scores calibrate the teacher's scale for the KL and Margin-MSE terms
(``fit_teacher_temperature``), and pick an ensemble's fusion (``select_fusion``).
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Mapping, Sequence

import torch

from kd.retrieval.dev_split import DevSplit
from kd.retrieval.metrics.retrieval import retrieval_metrics

log = logging.getLogger(__name__)

PairScorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]  # (queries [N], docs [N]) -> scores [N]
AUDIT_METRICS = ("ndcg@10", "recall@10")


def candidate_pools(corpus: Mapping[str, str], dev: DevSplit, depth: int) -> dict[str, list[str]]:
    """Each dev query's top-``depth`` BM25 documents (the pool both teacher and student rerank)."""
    from kd.retrieval.data.mining import bm25_rankings

    return bm25_rankings(corpus, dev.queries, depth)


def pool_scores(scorer: PairScorer, corpus: Mapping[str, str], dev: DevSplit, pools: Mapping[str, Sequence[str]]
                ) -> dict[str, list[float]]:
    """Scores of every (dev query, pool document) pair, grouped per query in pool order."""
    pairs = [(q, d) for q, docs in pools.items() for d in docs]
    flat = list(scorer([dev.queries[q] for q, _ in pairs], [corpus[d] for _, d in pairs]))
    out: dict[str, list[float]] = {}
    for (q, _), s in zip(pairs, flat):
        out.setdefault(q, []).append(float(s))
    return out


def rank_pools(pools: Mapping[str, Sequence[str]], scores: Mapping[str, Sequence[float]]) -> dict[str, list[str]]:
    """Each pool reordered by its scores, best first (ties keep pool order)."""
    return {q: [d for _, _, d in sorted(zip([-s for s in scores[q]], range(len(docs)), docs))]
            for q, docs in pools.items()}


def pool_metrics(scores: Mapping[str, Sequence[float]], pools: Mapping[str, Sequence[str]], dev: DevSplit
                 ) -> dict[str, float]:
    """Retrieval metrics of the pools reordered by ``scores`` against the dev qrels."""
    return retrieval_metrics(rank_pools(pools, scores), dev.qrels)


def student_scorer(student, batch_size: int = 64) -> PairScorer:
    """(queries, docs) -> cosine of the student's unit vectors (each distinct text encoded once)."""
    def score(queries: Sequence[str], documents: Sequence[str]) -> list[float]:
        texts = list(dict.fromkeys([*queries, *documents]))
        vectors = student.encode(texts, batch_size=batch_size)
        row = {t: i for i, t in enumerate(texts)}
        q = vectors[[row[t] for t in queries]]
        d = vectors[[row[t] for t in documents]]
        return (q * d).sum(-1).tolist()
    return score


def fit_teacher_temperature(scores: Mapping[str, Sequence[float]], pools: Mapping[str, Sequence[str]],
                            qrels: Mapping[str, Mapping[str, int]], student_temperature: float = 0.05
                            ) -> dict[str, float]:
    """The temperature T that makes softmax(teacher / T) over each pool best predict the labelled positives.

    Minimises the dev negative log-likelihood  -mean_q log sum_{d relevant} softmax(s_q / T)_d  (temperature
    scaling, Guo et al. 2017) over T in [floor, 1e3] (log grid, then a finer grid around the best). The floor keeps
    the calibrated teacher within what the student can express: the median per-query score range / T may not
    exceed the student's whole logit range 2 / ``student_temperature`` (cosines span [-1, 1]); a teacher that is
    perfect on a small dev split would otherwise be fitted to T -> 0 (infinitely sharp). Queries with no relevant
    document in their pool are left out. Returns ``{"teacher_temperature", "dev_nll", "queries", "uniform_nll",
    "floor"}``; NLLs are in nats (``uniform_nll`` = a uniform guess, log(pool size)).
    """
    rows, masks = [], []
    for q, docs in pools.items():
        relevant = [qrels.get(q, {}).get(d, 0) > 0 for d in docs]
        if any(relevant) and len(docs) > 1:
            rows.append(torch.tensor(scores[q], dtype=torch.float64))
            masks.append(torch.tensor(relevant))
    if not rows:
        raise ValueError("no dev query has a relevant document among its candidates: cannot calibrate the teacher")

    def nll(temperature: float) -> float:
        total = 0.0
        for row, mask in zip(rows, masks):
            logp = torch.log_softmax(row / temperature, dim=0)
            total -= torch.logsumexp(logp[mask], dim=0).item()
        return total / len(rows)

    ranges = sorted(float(row.max() - row.min()) for row in rows)
    floor = max(1e-4, ranges[len(ranges) // 2] * student_temperature / 2)
    grid = [floor * (1e3 / floor) ** (i / 140) for i in range(141)]
    values = [nll(t) for t in grid]
    best = min(range(len(grid)), key=values.__getitem__)
    lo, hi = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
    fine = [lo * (hi / lo) ** (i / 40) for i in range(41)]
    temperature = min(fine, key=nll)
    return {"teacher_temperature": float(temperature), "dev_nll": float(nll(temperature)), "queries": len(rows),
            "uniform_nll": float(sum(math.log(len(r)) for r in rows) / len(rows)), "floor": float(floor)}


def select_fusion(ensemble, corpus: Mapping[str, str], dev: DevSplit, grid_values=(0.0, 0.5, 1.0, 2.0)
                  ) -> dict:
    """Pick an ``EnsembleTeacher``'s method and weights by nDCG@10 of its full-corpus ranking of the dev queries.

    The ensemble must be indexed on ``corpus``. Every method x weight combination of ``weight_grid`` is tried
    (member rows are computed once); the best is set on the ensemble and returned with its dev metrics.
    """
    from kd.retrieval.teachers.ensemble import METHODS, weight_grid

    doc_ids = list(corpus)
    query_ids = list(dev.queries)
    texts = [dev.queries[q] for q in query_ids]
    best: dict | None = None
    tried = 0
    for method in METHODS:
        ensemble.set_fusion(ensemble.weights, method)
        rows = {name: ensemble.member_rows(name, texts) for name in ensemble.members}
        for weights in weight_grid(list(ensemble.members), grid_values):
            fused = sum(w * rows[name] for name, w in weights.items() if w > 0)
            top = fused.topk(min(100, len(doc_ids)), dim=1).indices.tolist()
            run = {q: [doc_ids[j] for j in row] for q, row in zip(query_ids, top)}
            metrics = retrieval_metrics(run, dev.qrels)
            tried += 1
            if best is None or metrics["ndcg@10"] > best["dev"]["ndcg@10"] + 1e-12:
                best = {"method": method, "weights": dict(weights),
                        "dev": {k: round(metrics[k], 4) for k in ("ndcg@10", "recall@10", "recall@100")}}
    assert best is not None
    best["tried"] = tried
    ensemble.set_fusion(best["weights"], best["method"])
    log.info("ensemble fusion chosen on %d dev queries: %s %s (dev nDCG@10 %.4f, %d tried)", len(dev),
             best["method"], best["weights"], best["dev"]["ndcg@10"], tried)
    return best


def audit_teacher(teacher_scorer: PairScorer, student, corpus: Mapping[str, str], dev: DevSplit, depth: int = 30,
                  batch_size: int = 64, student_temperature: float = 0.05) -> dict:
    """Teacher vs untrained student on the dev pools, plus the teacher's fitted temperature.

    Returns ``{"split": "dev", "queries": N, "depth": depth, "teacher": {"ndcg@10", "recall@10"},
    "student": {...}, "teacher_better": bool, "calibration": fit_teacher_temperature(...)}``.
    """
    pools = candidate_pools(corpus, dev, depth)
    teacher_scores = pool_scores(teacher_scorer, corpus, dev, pools)
    student_scores = pool_scores(student_scorer(student, batch_size), corpus, dev, pools)
    teacher_metrics = pool_metrics(teacher_scores, pools, dev)
    student_metrics = pool_metrics(student_scores, pools, dev)
    result = {
        "split": "dev", "queries": len(dev), "depth": depth,
        "teacher": {k: round(teacher_metrics[k], 4) for k in AUDIT_METRICS},
        "student": {k: round(student_metrics[k], 4) for k in AUDIT_METRICS},
    }
    result["teacher_better"] = result["teacher"]["ndcg@10"] > result["student"]["ndcg@10"]
    result["calibration"] = fit_teacher_temperature(teacher_scores, pools, dev.qrels, student_temperature)
    return result
