"""Turn a list of examples into tensors for the student (and the teacher), off the training loop.

Runs in the DataLoader (worker processes when ``num_workers > 0``), so tokenisation overlaps training.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import torch


def doc_key(doc_id: str) -> int:
    """A stable signed 64-bit key of a document id (a tensor can carry it across processes)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little", signed=True)


def known_positive_mask(positive_keys: Sequence[Sequence[int]], doc_keys: torch.Tensor,
                        own_columns: torch.Tensor) -> torch.Tensor:
    """bool [B, N]: True where document n is one of query i's known positives, except its own column.

    positive_keys: B sequences of ``doc_key``s (query i's known positives, its own positive included);
    doc_keys: [N] int64 keys of the batch's documents (the local batch, or the batch gathered from every
    process); own_columns: [B] column of each query's own positive in ``doc_keys``.
    """
    mask = torch.zeros(len(positive_keys), doc_keys.shape[0], dtype=torch.bool)
    for i, keys in enumerate(positive_keys):
        mask[i] = torch.isin(doc_keys.cpu(), torch.tensor(list(keys), dtype=torch.long))
    mask[torch.arange(len(positive_keys)), own_columns.cpu()] = False
    return mask.to(doc_keys.device)


class DistillationCollator:
    """Examples (each a query and C = 1 + k candidates) -> one batch dict.

    Output keys:
      - ``query_ids`` [B] and ``doc_ids`` [B*C] (lists of str)
      - ``query``: student tokens, each tensor [B, Lq]; ``docs``: student tokens [B*C, Ld], or with
        ``doc_group_size`` a ``LengthGroups`` (the B*C documents sorted by length, padded per group of that size;
        ``BiEncoder.embed`` returns their vectors in input order)
      - ``pairs``: teacher tokens of the B*C (query, doc) pairs [B*C, Lp] (only with a teacher tokenizer and
        ``tokenize_pairs``; with a teacher score cache the module tokenises just the uncached pairs)
      - ``pair_texts``: (queries [B*C], documents [B*C]) of those pairs
      - ``in_batch_exclude``: bool [B, B*C], True where document n is a known positive of query i,
        except query i's own positive (column i*C)
      - ``doc_keys`` [B*C] int64 and ``positive_keys`` (B tuples of int): ``doc_key``s of the documents and of
        each query's known positives, to rebuild ``in_batch_exclude`` over a batch gathered across processes
      - ``num_candidates``: C
    """

    def __init__(self, student, teacher=None, positives: Mapping[str, set[str]] | None = None,
                 tokenize_pairs: bool = True, doc_group_size: int | None = None):
        if doc_group_size is not None and doc_group_size < 1:
            raise ValueError(f"doc_group_size must be >= 1 or None, got {doc_group_size}")
        self.student = student
        self.doc_group_size = doc_group_size
        self.teacher = teacher
        self.positives = positives or {}
        self.tokenize_pairs = tokenize_pairs

    def __call__(self, examples: Sequence[dict]) -> dict:
        candidates = len(examples[0]["doc_ids"])
        if any(len(e["doc_ids"]) != candidates for e in examples):
            raise ValueError("every example in a batch must have the same number of candidates")
        query_ids = [e["query_id"] for e in examples]
        doc_ids = [d for e in examples for d in e["doc_ids"]]
        docs = [t for e in examples for t in e["docs"]]
        doc_keys = torch.tensor([doc_key(d) for d in doc_ids], dtype=torch.long)
        positive_keys = [tuple(sorted(doc_key(d) for d in self.positives.get(q, set()) | {e["doc_ids"][0]}))
                         for q, e in zip(query_ids, examples)]
        exclude = known_positive_mask(positive_keys, doc_keys, torch.arange(len(examples)) * candidates)
        batch = {
            "query_ids": query_ids,
            "doc_ids": doc_ids,
            "query": self.student.tokenize([e["query"] for e in examples]),
            "docs": (self.student.tokenize(docs) if self.doc_group_size is None
                     else self.student.tokenize_grouped(docs, self.doc_group_size)),
            "in_batch_exclude": exclude,
            "doc_keys": doc_keys,
            "positive_keys": positive_keys,
            "num_candidates": candidates,
        }
        pair_queries = [e["query"] for e in examples for _ in range(candidates)]
        batch["pair_texts"] = (pair_queries, docs)
        if self.teacher is not None and self.tokenize_pairs:
            batch["pairs"] = self.teacher.tokenize(pair_queries, docs)
        return batch
