"""Shape checks shared by the loss terms: a wrong shape fails with the tensor's name, not deep in torch."""

from __future__ import annotations

import torch


def check_candidate_scores(name: str, tensor: torch.Tensor, like: torch.Tensor | None = None) -> None:
    """Require a [B, C] tensor (B queries, C >= 1 candidates); with ``like``, the same shape as ``like``."""
    if tensor.dim() != 2 or tensor.shape[1] < 1:
        raise ValueError(f"{name} must be [B, C] with C >= 1, got shape {tuple(tensor.shape)}")
    if like is not None and tensor.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(like.shape)}")
