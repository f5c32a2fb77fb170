"""A seeded dev split carved from the training queries: for auditing and calibrating the teacher, never test.

The dev queries (and their qrels and triplets) are removed from training, so every choice made on them (the
teacher audit, the score calibration, an ensemble's fusion weights, a cross-encoder's checkpoint) is made on
data the student never trains on and the test split never sees.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from kd.retrieval.data.sources import RetrievalSplits


@dataclass
class DevSplit:
    """dev queries: query_id -> text; dev qrels: query_id -> {doc_id: relevance}."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def __len__(self) -> int:
        return len(self.queries)


def carve_dev_split(splits: RetrievalSplits, fraction: float, seed: int, min_queries: int = 5
                    ) -> tuple[RetrievalSplits, DevSplit | None]:
    """(training splits without the dev queries, the dev split), or (splits, None) when ``fraction`` is 0.

    ``round(fraction * n)`` of the n labelled training queries (at least ``min_queries``, and at least one query
    is left to train on) are drawn with ``random.Random(seed)``; queries only known from triplets count too.
    Synthetic queries (``splits.synthetic_ids``) are never dev queries and do not change which queries are.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"dev fraction must be in [0, 1), got {fraction}")
    labelled = sorted(({q for q, docs in splits.train_qrels.items() if any(r > 0 for r in docs.values())}
                       | {t.query_id for t in splits.triplets}) - set(splits.synthetic_ids))
    if fraction == 0 or len(labelled) < 2:
        return splits, None
    count = min(len(labelled) - 1, max(min_queries, round(fraction * len(labelled))))
    dev_ids = set(random.Random(seed).sample(labelled, count))
    qrels: dict[str, dict[str, int]] = {}
    for q in sorted(dev_ids):
        docs = {d: r for d, r in splits.train_qrels.get(q, {}).items() if r > 0}
        for t in splits.triplets:
            if t.query_id == q:
                docs.setdefault(t.positive_id, 1)
        qrels[q] = docs
    train = dataclasses.replace(
        splits,
        train_queries={q: t for q, t in splits.train_queries.items() if q not in dev_ids},
        train_qrels={q: d for q, d in splits.train_qrels.items() if q not in dev_ids},
        triplets=[t for t in splits.triplets if t.query_id not in dev_ids],
    )
    return train, DevSplit({q: splits.train_queries[q] for q in sorted(dev_ids)}, qrels)
