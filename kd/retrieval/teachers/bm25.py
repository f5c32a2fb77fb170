"""BM25 as a frozen teacher: lexical scores from ``bm25s`` over the indexed corpus (English stop words removed)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from kd.retrieval.teachers.corpus_teacher import CorpusTeacher


class BM25Teacher(CorpusTeacher):
    """BM25 (Lucene variant, k1=1.5, b=0.75 as in ``bm25s``) score of every document: float32 [Q, N], >= 0."""

    kind = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75):
        super().__init__()
        self.k1 = k1
        self.b = b
        self._retriever = None

    def _index_texts(self, texts: list[str]) -> None:
        import bm25s

        self._retriever = bm25s.BM25(k1=self.k1, b=self.b)
        self._retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def corpus_scores(self, queries: Sequence[str]) -> torch.Tensor:
        import bm25s

        tokenized = bm25s.tokenize(list(queries), stopwords="en", show_progress=False, return_ids=False)
        rows = [np.asarray(self._retriever.get_scores(tokens), dtype=np.float32) for tokens in tokenized]
        return torch.from_numpy(np.stack(rows))

    def identity(self) -> dict:
        return {"kind": "bm25", "k1": self.k1, "b": self.b, "corpus": self.corpus_fingerprint()}
