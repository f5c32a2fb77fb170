"""Hinge penalty on the student's similarity to negatives that rises above a margin."""

from __future__ import annotations

import torch
from torch import nn

from kd.retrieval.losses.shapes import check_candidate_scores


class NegativeHingePenalty(nn.Module):
    """mean over negatives of max(0, cos(q, negative) - margin).

    Pushes the student's cosine for negatives below ``margin`` without caring how far below, so it adds a
    direct signal on negatives that the softmax terms only see relative to the positive.

    | input           | shape  | meaning                                                          |
    |-----------------|--------|------------------------------------------------------------------|
    | negative_scores | [B, K] | cosine similarities of each query with its K hard negatives       |
    | mask            | [B, K] | optional bool, True = a real negative (False: a likely false      |
    |                 |        | negative or padding, not penalised)                              |

    Returns a scalar; 0 when no negative is above the margin (or all are masked).
    """

    def __init__(self, margin: float = 0.3):
        super().__init__()
        if not -1.0 <= margin <= 1.0:
            raise ValueError(f"margin is a cosine similarity and must lie in [-1, 1], got {margin}")
        self.margin = margin

    def forward(self, negative_scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_candidate_scores("negative_scores", negative_scores)
        hinge = torch.relu(negative_scores.float() - self.margin)
        if mask is None:
            return hinge.mean()
        check_candidate_scores("mask", mask, like=negative_scores)
        weight = mask.to(hinge.dtype)
        return (hinge * weight).sum() / weight.sum().clamp(min=1.0)
