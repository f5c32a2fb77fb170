"""Frozen teachers that score a query against a whole corpus at once (BM25, a frozen bi-encoder, their fusion).

Such a teacher is ``index``-ed on the corpus once; ``corpus_scores`` then gives every document's score for
each query, and ``score`` (the pair interface every kd teacher has, used by the score cache, the negative
filter and the KL / Margin-MSE terms) looks the document up in that row. A document that is not in the indexed
corpus is scored on its own (``score_unindexed``), or refused when the teacher cannot (BM25's IDF is a corpus
statistic).
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import torch
from torch import nn


def corpus_fingerprint(texts: Sequence[str]) -> str:
    """16 hex digits that change when any document text (or their order) changes."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.blake2b(text.encode(), digest_size=12).digest())
    return digest.hexdigest()[:16]


class CorpusTeacher(nn.Module):
    """Base class: ``index(corpus)``, then ``corpus_scores(queries)`` [Q, N] and ``score(queries, docs)`` [N].

    Subclasses implement ``_index_texts(texts)`` and ``corpus_scores``; scores are any real numbers, higher =
    more relevant (kd calibrates each teacher's scale on the dev split before the KL / Margin-MSE terms).
    """

    kind = "corpus"

    def __init__(self):
        super().__init__()
        self.doc_texts: list[str] = []
        self._row_of_text: dict[str, int] = {}
        self._query_rows: dict[str, torch.Tensor] = {}  # query text -> corpus_scores row (float32 [N])
        self.precision = "fp32"

    @property
    def indexed(self) -> bool:
        return bool(self.doc_texts)

    def index(self, corpus: Mapping[str, str] | Sequence[str]) -> "CorpusTeacher":
        """Index the documents (a mapping id -> text, or texts); returns self."""
        texts = list(corpus.values()) if isinstance(corpus, Mapping) else list(corpus)
        if not texts:
            raise ValueError("a corpus teacher needs at least one document to index")
        if texts == self.doc_texts:
            return self
        self.doc_texts = texts
        self._row_of_text = {}
        for i, text in enumerate(texts):
            self._row_of_text.setdefault(text, i)
        self._query_rows = {}
        self._index_texts(texts)
        return self

    def corpus_fingerprint(self) -> str:
        return corpus_fingerprint(self.doc_texts)

    def _index_texts(self, texts: list[str]) -> None:
        raise NotImplementedError

    def corpus_scores(self, queries: Sequence[str]) -> torch.Tensor:
        """Scores of every indexed document for each query -> float32 [Q, N]."""
        raise NotImplementedError

    def score_unindexed(self, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        raise ValueError(f"{type(self).__name__} scores only documents of the corpus it indexed "
                         f"({len(self.doc_texts)} documents); got one that is not in it")

    def rows(self, queries: Sequence[str]) -> list[torch.Tensor]:
        """``corpus_scores`` rows for ``queries``, computed once per distinct query text and kept."""
        if not self.indexed:
            raise RuntimeError(f"{type(self).__name__}.index(corpus) must be called before scoring")
        new = [q for q in dict.fromkeys(queries) if q not in self._query_rows]
        if new:
            for q, row in zip(new, self.corpus_scores(new)):
                self._query_rows[q] = row.float().clone()
        return [self._query_rows[q] for q in queries]

    @torch.no_grad()
    def score(self, queries: Sequence[str], documents: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Score of each (query, document) pair -> float32 [N] on CPU, in input order."""
        if len(queries) != len(documents):
            raise ValueError(f"got {len(queries)} queries for {len(documents)} documents")
        if not self.indexed:
            raise RuntimeError(f"{type(self).__name__}.index(corpus) must be called before scoring")
        out = torch.empty(len(queries), dtype=torch.float32)
        unindexed = [i for i, d in enumerate(documents) if d not in self._row_of_text]
        indexed = [i for i, d in enumerate(documents) if d in self._row_of_text]
        if indexed:
            rows = self.rows([queries[i] for i in indexed])
            out[indexed] = torch.stack([row[self._row_of_text[documents[i]]] for row, i in zip(rows, indexed)])
        if unindexed:
            out[unindexed] = self.score_unindexed([queries[i] for i in unindexed], [documents[i] for i in unindexed])
        return out

    def freeze(self) -> "CorpusTeacher":
        """Eval mode and no gradients (a frozen teacher)."""
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self

    def identity(self) -> dict:
        """Everything that determines the scores (the score cache's key)."""
        raise NotImplementedError
