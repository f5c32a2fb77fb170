"""Exact dense retrieval with FAISS: inner product on unit vectors = cosine similarity."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def build_index(doc_embeddings: torch.Tensor):
    """[N, H] unit-norm float vectors -> a ``faiss.IndexFlatIP`` holding them (row i = document i)."""
    import faiss

    if doc_embeddings.dim() != 2:
        raise ValueError(f"doc_embeddings must be [N, H], got {tuple(doc_embeddings.shape)}")
    vectors = np.ascontiguousarray(doc_embeddings.detach().float().cpu().numpy())
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def search(index, query_embeddings: torch.Tensor, doc_ids: Sequence[str], query_ids: Sequence[str], k: int
           ) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Top-``k`` documents per query.

    query_embeddings: [Q, H] unit-norm -> (run: query_id -> doc ids best first, scores: query_id -> cosines).
    """
    if query_embeddings.shape[0] != len(query_ids):
        raise ValueError(f"{query_embeddings.shape[0]} query vectors for {len(query_ids)} query ids")
    k = min(k, index.ntotal)
    vectors = np.ascontiguousarray(query_embeddings.detach().float().cpu().numpy())
    scores, rows = index.search(vectors, k)
    run = {q: [doc_ids[j] for j in row if j >= 0] for q, row in zip(query_ids, rows)}
    score_map = {q: [float(s) for s, j in zip(srow, row) if j >= 0] for q, srow, row in zip(query_ids, scores, rows)}
    return run, score_map
