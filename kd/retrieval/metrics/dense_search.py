"""Dense retrieval with FAISS: inner product on unit vectors = cosine similarity.

The index type is a config choice (``conf/index/``, ``IndexSpec``):

| ``kind``   | FAISS factory string      | exact | memory per vector (H = 384)      | when                          |
|------------|---------------------------|-------|----------------------------------|-------------------------------|
| ``flat``   | ``Flat``                  | yes   | 4·H bytes (1536 B)               | up to a few 100k documents    |
| ``ivf_flat`` | ``IVF{nlist},Flat``     | no    | 4·H + 8 bytes                    | millions, RAM for raw vectors |
| ``ivf_pq`` | ``IVF{nlist},PQ{m}x{nbits}np`` | no | m·nbits/8 + 8 bytes (48 B at m=48) | tens of millions, little RAM |
| ``hnsw``   | ``HNSW{M},Flat``          | no    | 4·H + ~8·M bytes                 | millions, lowest latency      |

IVF indexes are trained (k-means) on a sample of the corpus; ``nlist: auto`` picks ~4·sqrt(N) lists, capped so
that every list gets at least 39 training points (FAISS's own minimum). Search-time knobs: ``nprobe`` (IVF
lists visited per query) and ``ef_search`` (HNSW candidate list).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

INDEX_KINDS = ("flat", "ivf_flat", "ivf_pq", "hnsw")


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index to build and how to search it (see the module table)."""

    kind: str = "flat"
    nlist: int | str = "auto"  # IVF: number of inverted lists (k-means centroids), or "auto"
    nprobe: int = 16  # IVF: lists visited per query
    pq_m: int = 48  # IVF-PQ: sub-quantizers (must divide H)
    pq_nbits: int = 8  # IVF-PQ: bits per sub-quantizer code
    hnsw_m: int = 32  # HNSW: graph neighbours per node
    ef_construction: int = 80  # HNSW: candidate list while building
    ef_search: int = 128  # HNSW: candidate list while searching
    train_size: int = 200_000  # IVF: at most this many vectors train the quantizer (a seeded sample)
    seed: int = 0

    def __post_init__(self):
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index.kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")
        if self.nlist != "auto" and (not isinstance(self.nlist, int) or self.nlist < 1):
            raise ValueError(f"index.nlist must be a positive integer or 'auto', got {self.nlist!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "IndexSpec":
        """From a ``conf/index/*.yaml`` mapping (None: flat). Unknown keys are refused, naming them."""
        if config is None:
            return cls()
        values = dict(config)
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown index option(s) {', '.join(unknown)}; known: {', '.join(cls.__dataclass_fields__)}")
        return cls(**values)

    def lists_for(self, size: int) -> int:
        """Inverted lists for a corpus of ``size`` vectors."""
        if self.nlist != "auto":
            return int(self.nlist)
        wanted = int(4 * math.sqrt(size))
        return max(1, min(wanted, size // 39, 65536))

    def factory_string(self, size: int) -> str:
        if self.kind == "flat":
            return "Flat"
        if self.kind == "hnsw":
            return f"HNSW{self.hnsw_m},Flat"
        nlist = self.lists_for(size)
        if self.kind == "ivf_flat":
            return f"IVF{nlist},Flat"
        return f"IVF{nlist},PQ{self.pq_m}x{self.pq_nbits}np"  # np: no polysemous training (minutes, unused here)


def _as_float32(vectors: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().float().cpu().numpy()
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be [N, H], got shape {tuple(vectors.shape)}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def build_index(doc_embeddings: torch.Tensor | np.ndarray, spec: IndexSpec | Mapping[str, Any] | None = None):
    """[N, H] unit-norm float vectors -> a FAISS inner-product index holding them (row i = document i).

    ``spec`` (an ``IndexSpec`` or its config mapping; default flat) picks the index type.
    """
    import faiss

    if not isinstance(spec, IndexSpec):
        spec = IndexSpec.from_config(spec)
    vectors = _as_float32(doc_embeddings)
    size, dim = vectors.shape
    if spec.kind == "ivf_pq" and dim % spec.pq_m:
        raise ValueError(f"index.pq_m={spec.pq_m} must divide the embedding size {dim}")
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
    else:
        index = faiss.index_factory(dim, spec.factory_string(size), faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rng = np.random.default_rng(spec.seed)
        sample = vectors if size <= spec.train_size else vectors[np.sort(rng.choice(size, spec.train_size, replace=False))]
        index.train(sample)
    index.add(vectors)
    set_search_params(index, spec)
    return index


def set_search_params(index, spec: IndexSpec) -> None:
    """Apply ``nprobe`` (IVF) / ``ef_search`` (HNSW) to a built index."""
    import faiss

    if spec.kind in ("ivf_flat", "ivf_pq"):
        faiss.extract_index_ivf(index).nprobe = spec.nprobe
    elif spec.kind == "hnsw":
        index.hnsw.efSearch = spec.ef_search


def index_memory_bytes(index) -> int:
    """Bytes the index occupies once serialised (= its in-memory payload: codes, lists, graph)."""
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def search(index, query_embeddings: torch.Tensor | np.ndarray, doc_ids: Sequence[str], query_ids: Sequence[str],
           k: int) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Top-``k`` documents per query.

    query_embeddings: [Q, H] unit-norm -> (run: query_id -> doc ids best first, scores: query_id -> cosines).
    """
    if query_embeddings.shape[0] != len(query_ids):
        raise ValueError(f"{query_embeddings.shape[0]} query vectors for {len(query_ids)} query ids")
    k = min(k, index.ntotal)
    scores, rows = index.search(_as_float32(query_embeddings), k)
    run = {q: [doc_ids[j] for j in row if j >= 0] for q, row in zip(query_ids, rows)}
    score_map = {q: [float(s) for s, j in zip(srow, row) if j >= 0] for q, srow, row in zip(query_ids, scores, rows)}
    return run, score_map


def recall_vs_exact(approx_rows: np.ndarray, exact_rows: np.ndarray, k: int) -> float:
    """Share of the exact top-``k`` neighbours that the approximate top-``k`` also returns (mean over queries).

    approx_rows, exact_rows: [Q, >= k] row ids from ``index.search`` (-1 = no result).
    """
    if approx_rows.shape[0] != exact_rows.shape[0] or min(approx_rows.shape[1], exact_rows.shape[1]) < k:
        raise ValueError(f"need [Q, >= {k}] rows, got {approx_rows.shape} and {exact_rows.shape}")
    found = [len(set(a[:k].tolist()) & set(e[:k].tolist()) - {-1}) for a, e in zip(approx_rows, exact_rows)]
    return float(np.mean(found)) / k
