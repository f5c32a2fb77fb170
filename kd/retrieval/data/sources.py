"""Load the data a distillation run needs: one corpus, train and eval queries with qrels, optional triplets."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from kd.retrieval.data.triplets import Triplet


@dataclass
class RetrievalSplits:
    """Everything retrieval distillation reads.

    corpus: doc_id -> text; train/eval queries: query_id -> text; train/eval qrels: query_id -> {doc_id: rel};
    triplets: labelled (query, positive, negatives) examples, used instead of the train qrels when given.
    """

    corpus: dict[str, str]
    train_queries: dict[str, str]
    train_qrels: dict[str, dict[str, int]]
    eval_queries: dict[str, str]
    eval_qrels: dict[str, dict[str, int]]
    triplets: list[Triplet] = field(default_factory=list)
    synthetic_ids: frozenset = frozenset()  # training queries written by kd-generate-queries (never in the dev split)
    synthetic_info: dict = field(default_factory=dict)  # what mixing them kept and dropped

    def fingerprint(self) -> str:
        """A short hash that changes when any text or label changes (cache keys for teachers and scores)."""
        import hashlib

        digest = hashlib.sha256()
        for part in (self.corpus, self.train_queries, self.train_qrels):
            for key in sorted(part):
                digest.update(f"{key}\t{part[key]}\n".encode())
        for t in self.triplets:
            digest.update(f"{t.query_id}\t{t.positive_id}\t{','.join(t.negative_ids)}\n".encode())
        return digest.hexdigest()[:16]


def _sample_queries(qrels: dict[str, dict[str, int]], limit: int | None, rng: random.Random) -> list[str]:
    ids = sorted(qrels)
    if limit is None or limit >= len(ids):
        return ids
    return sorted(rng.sample(ids, limit))


def load_retrieval_data(
    format: str,
    path: str,
    train_split: str = "train",
    eval_split: str = "test",
    triplets: str | None = None,
    max_train_queries: int | None = None,
    max_eval_queries: int | None = None,
    corpus_size: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    synthetic: str | None = None,
    synthetic_max: int | None = None,
    synthetic_ratio: float | None = None,
) -> RetrievalSplits:
    """Read a data set and optionally shrink it to a quick-run size.

    Args:
        format: ``beir`` (a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or ``scifact``
            (the SciFact release zip, converted once to BEIR format under ``cache_dir``).
        triplets: optional TSV/JSONL of (query, positive, negative) by id or by text.
        max_train_queries / max_eval_queries: keep a seeded random subset of the queries.
        corpus_size: keep every document some kept query (or triplet) needs, then fill up with seeded random
            distractors to this many documents (None keeps the whole corpus).
        synthetic: optional ``queries.jsonl`` of ``kd-generate-queries``, mixed into the training queries
            (``kd.retrieval.data.synthetic.mix_synthetic``: never a test positive or a test query's text; at most
            ``synthetic_max``, at most ``synthetic_ratio`` x the labelled training queries). Its documents are
            checked against the whole corpus; with ``corpus_size`` those outside the subset are left out.
    """
    from kd.retrieval.data.beir import load_beir
    from kd.retrieval.data.triplets import load_triplets

    if format == "scifact":
        from kd.retrieval.data.scifact import ensure_scifact_beir
        from kd.paths import cache_dir as default_cache

        folder = ensure_scifact_beir(path, Path(cache_dir) if cache_dir else default_cache())
    elif format == "beir":
        folder = Path(path)
    else:
        raise ValueError(f"data.format must be 'beir' or 'scifact', got {format!r}")

    train = load_beir(folder, train_split)
    evaluation = load_beir(folder, eval_split)
    corpus = dict(train.corpus)
    train_queries, train_qrels = dict(train.queries), dict(train.qrels)
    triplet_list: list[Triplet] = []
    if triplets:
        triplet_list, corpus, train_queries = load_triplets(triplets, corpus, train_queries)

    synthetic_queries = None
    if synthetic:
        from kd.retrieval.data.synthetic import load_synthetic

        synthetic_queries = load_synthetic(synthetic, corpus)

    rng = random.Random(seed)
    keep_train = _sample_queries(train_qrels, max_train_queries, rng)
    keep_eval = _sample_queries(evaluation.qrels, max_eval_queries, rng)
    train_qrels = {q: train_qrels[q] for q in keep_train}
    eval_qrels = {q: evaluation.qrels[q] for q in keep_eval}
    if triplets and max_train_queries is not None:
        kept = set(keep_train)
        triplet_list = [t for t in triplet_list if t.query_id in kept]

    if corpus_size is not None and corpus_size < len(corpus):
        needed = {d for qrels in (train_qrels, eval_qrels) for docs in qrels.values() for d in docs}
        needed |= {d for t in triplet_list for d in (t.positive_id, *t.negative_ids)}
        others = sorted(set(corpus) - needed)
        extra = rng.sample(others, max(0, min(len(others), corpus_size - len(needed))))
        keep_docs = needed | set(extra)
        corpus = {d: text for d, text in corpus.items() if d in keep_docs}

    splits = RetrievalSplits(
        corpus=corpus,
        train_queries={q: train_queries[q] for q in train_qrels} | {t.query_id: train_queries[t.query_id] for t in triplet_list},
        train_qrels=train_qrels,
        eval_queries={q: evaluation.queries[q] for q in eval_qrels},
        eval_qrels=eval_qrels,
        triplets=triplet_list,
    )
    if synthetic_queries is not None:
        from kd.retrieval.data.synthetic import mix_synthetic

        splits = mix_synthetic(splits, synthetic_queries, evaluation.qrels, evaluation.queries, synthetic_max,
                               synthetic_ratio, seed=seed, source=str(synthetic))
    return splits
