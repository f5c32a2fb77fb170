"""Turn a list of examples into tensors for the student (and the teacher), off the training loop.

Runs in the DataLoader (worker processes when ``num_workers > 0``), so tokenisation overlaps training.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch


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
        exclude = torch.zeros(len(examples), len(doc_ids), dtype=torch.bool)
        for i, query_id in enumerate(query_ids):
            known = self.positives.get(query_id, set()) | {examples[i]["doc_ids"][0]}
            for n, doc_id in enumerate(doc_ids):
                if n != i * candidates and doc_id in known:
                    exclude[i, n] = True
        batch = {
            "query_ids": query_ids,
            "doc_ids": doc_ids,
            "query": self.student.tokenize([e["query"] for e in examples]),
            "docs": (self.student.tokenize(docs) if self.doc_group_size is None
                     else self.student.tokenize_grouped(docs, self.doc_group_size)),
            "in_batch_exclude": exclude,
            "num_candidates": candidates,
        }
        pair_queries = [e["query"] for e in examples for _ in range(candidates)]
        batch["pair_texts"] = (pair_queries, docs)
        if self.teacher is not None and self.tokenize_pairs:
            batch["pairs"] = self.teacher.tokenize(pair_queries, docs)
        return batch
