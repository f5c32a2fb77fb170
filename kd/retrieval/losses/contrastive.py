"""InfoNCE over each query's positive vs. its hard negatives and every other query's documents (in-batch)."""

from __future__ import annotations

import torch
from torch import nn


class InfoNCELoss(nn.Module):
    """Contrastive cross-entropy: the positive must win against all unmasked documents of the batch.

    The batch holds B queries, each with C candidates (column 0 its positive, 1..C-1 its hard negatives),
    flattened into N = B * C documents; query i's positive is document ``i * C``.

        loss = mean_i -log( exp(s[i, i*C] / T) / sum_{n unmasked} exp(s[i, n] / T) )

    | input          | shape  | meaning                                                              |
    |----------------|--------|----------------------------------------------------------------------|
    | scores         | [B, N] | cosine similarity of every query with every document in the batch     |
    | positive_index | [B]    | column of each query's positive in ``scores`` (long)                  |
    | exclude        | [B, N] | optional bool, True = drop the document from query i's denominator     |
    |                |        | (likely false negatives: other copies of a positive, documents the    |
    |                |        | teacher rates as relevant as the positive). The positive is never     |
    |                |        | excluded.                                                            |
    """

    def __init__(self, temperature: float = 0.05):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature

    def forward(
        self, scores: torch.Tensor, positive_index: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        if scores.dim() != 2:
            raise ValueError(f"scores must be [B, N], got shape {tuple(scores.shape)}")
        if positive_index.shape != (scores.shape[0],):
            raise ValueError(f"positive_index must be [{scores.shape[0]}], got {tuple(positive_index.shape)}")
        logits = scores.float() / self.temperature
        if exclude is not None:
            if exclude.shape != scores.shape:
                raise ValueError(f"exclude has shape {tuple(exclude.shape)}, expected {tuple(scores.shape)}")
            keep_positive = torch.zeros_like(exclude)
            keep_positive[torch.arange(scores.shape[0], device=scores.device), positive_index] = True
            logits = logits.masked_fill(exclude & ~keep_positive, torch.finfo(torch.float32).min)
        return nn.functional.cross_entropy(logits, positive_index)
