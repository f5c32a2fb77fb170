"""A weighted fusion of frozen corpus teachers (BM25, bi-encoders): the offline teacher that beats its members.

For each query every member scores the whole corpus (``corpus_scores`` [Q, N]); the rows are put on one scale
per query and summed with weights:

| ``method`` | member row r -> normalised row                                    | notes                              |
|------------|-------------------------------------------------------------------|------------------------------------|
| ``zscore`` | (r - mean(top_k(r))) / std(top_k(r))                              | k = ``depth``; keeps score margins |
| ``rrf``    | 1 / (``rrf_k`` + rank(r)) (rank 1 = best), 0 below the top ``depth`` | reciprocal-rank fusion, ranks only |

    fused[q, d] = sum_m weight_m * normalised_m[q, d]

Weights and method are chosen on the dev split of the training queries (``select_fusion``), never on test.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import torch

from kd.retrieval.teachers.corpus_teacher import CorpusTeacher

METHODS = ("zscore", "rrf")


def normalise_rows(scores: torch.Tensor, method: str, depth: int = 100, rrf_k: int = 60) -> torch.Tensor:
    """Per-query normalisation of member scores [Q, N] -> [Q, N] float32 (see the module table)."""
    if scores.dim() != 2:
        raise ValueError(f"expected member scores [Q, N], got {tuple(scores.shape)}")
    scores = scores.float()
    k = min(depth, scores.shape[1])
    if method == "zscore":
        top = scores.topk(k, dim=1).values
        mean = top.mean(dim=1, keepdim=True)
        std = top.std(dim=1, keepdim=True, unbiased=False).clamp(min=1e-6)
        return (scores - mean) / std
    if method == "rrf":
        order = scores.argsort(dim=1, descending=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(1, scores.shape[1] + 1).expand_as(order).contiguous())
        fused = 1.0 / (rrf_k + ranks.float())
        return fused.masked_fill(ranks > k, 0.0)
    raise ValueError(f"unknown fusion method {method!r}; known: {list(METHODS)}")


class EnsembleTeacher(CorpusTeacher):
    """Weighted fusion of ``members`` (``CorpusTeacher``s) with per-query normalisation -> float32 [Q, N].

    Args:
        members: name -> teacher (each indexed on the same corpus by ``index``).
        weights: name -> weight >= 0 (a member with weight 0 is not scored at all).
        method: ``zscore`` or ``rrf``; depth: the top-k the normalisation looks at; rrf_k: RRF's constant.
    """

    kind = "ensemble"

    def __init__(self, members: Mapping[str, CorpusTeacher], weights: Mapping[str, float], method: str = "zscore",
                 depth: int = 100, rrf_k: int = 60):
        super().__init__()
        if not members:
            raise ValueError("an ensemble teacher needs at least one member")
        self.members = torch.nn.ModuleDict(dict(members))
        self.depth = depth
        self.rrf_k = rrf_k
        self._member_rows: dict[str, dict[str, torch.Tensor]] = {}  # "member/method" -> query -> normalised row
        self.set_fusion(weights, method)

    def _index_texts(self, texts: list[str]) -> None:
        for member in self.members.values():
            member.index(texts)
        self._member_rows = {}

    def set_fusion(self, weights: Mapping[str, float], method: str) -> None:
        """Change weights / method (after ``select_fusion``); kept member rows are reused."""
        if set(weights) != set(self.members):
            raise ValueError(f"ensemble weights {sorted(weights)} do not match its members {sorted(self.members)}")
        if method not in METHODS:
            raise ValueError(f"unknown fusion method {method!r}; known: {list(METHODS)}")
        self.weights = {name: float(weights[name]) for name in self.members}
        self.method = method
        self._query_rows = {}
        self._member_rows = {key: rows for key, rows in self._member_rows.items() if key.endswith(f"/{method}")}

    def member_rows(self, name: str, queries: Sequence[str]) -> torch.Tensor:
        """Normalised scores of member ``name`` [Q, N] (computed once per query and method, then kept)."""
        kept = self._member_rows.setdefault(f"{name}/{self.method}", {})
        new = [q for q in dict.fromkeys(queries) if q not in kept]
        if new:
            raw = self.members[name].corpus_scores(new)
            for q, row in zip(new, normalise_rows(raw, self.method, self.depth, self.rrf_k)):
                kept[q] = row.clone()
        return torch.stack([kept[q] for q in queries])

    def corpus_scores(self, queries: Sequence[str]) -> torch.Tensor:
        total = torch.zeros(len(queries), len(self.doc_texts))
        for name, weight in self.weights.items():
            if weight > 0:
                total += weight * self.member_rows(name, queries)
        return total

    def identity(self) -> dict:
        return {"kind": "ensemble", "method": self.method, "depth": self.depth, "rrf_k": self.rrf_k,
                "corpus": self.corpus_fingerprint(),
                "members": {name: [self.weights[name], m.identity()] for name, m in sorted(self.members.items())}}


def weight_grid(names: Sequence[str], values: Sequence[float] = (0.0, 0.5, 1.0, 2.0)) -> list[dict[str, float]]:
    """Every weight combination over ``values`` with at least one positive weight, scale duplicates removed."""
    seen, grid = set(), []
    for combo in itertools.product(values, repeat=len(names)):
        top = max(combo)
        if top <= 0:
            continue
        key = tuple(round(v / top, 6) for v in combo)
        if key not in seen:
            seen.add(key)
            grid.append(dict(zip(names, combo)))
    return grid
