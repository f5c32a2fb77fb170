"""Margin-MSE (Hofstätter et al. 2020): the student reproduces the teacher's positive-vs-negative score margins."""

from __future__ import annotations

import torch
from torch import nn

from kd.retrieval.losses.shapes import check_candidate_scores


class MarginMSELoss(nn.Module):
    """mean over queries i and negatives j >= 1 of

        ((s[i, 0] - s[i, j]) / student_temperature  -  (t[i, 0] - t[i, j]) / teacher_temperature) ** 2

    Both margins are in logit units (nats): the student's cosine margin at its temperature, the teacher's score
    margin at the temperature calibrated on the dev split, so a teacher of any scale (sigmoid, cosine, z-fused
    BM25) asks for margins the student can express.

    | input          | shape  | meaning                                                           |
    |----------------|--------|-------------------------------------------------------------------|
    | student_scores | [B, C] | cosine similarities; column 0 the labelled positive               |
    | teacher_scores | [B, C] | frozen teacher scores of the same pairs (any scale, no grad)      |
    | mask           | [B, C] | optional bool, True = candidate j takes part (column 0 ignored)   |

    Returns a scalar (0 when no negative takes part). Needs C >= 2.
    """

    def __init__(self, teacher_temperature: float = 1.0, student_temperature: float = 0.05):
        super().__init__()
        if teacher_temperature <= 0 or student_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        self.teacher_temperature = teacher_temperature
        self.student_temperature = student_temperature

    def forward(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        check_candidate_scores("student_scores", student_scores)
        check_candidate_scores("teacher_scores", teacher_scores, like=student_scores)
        if student_scores.shape[1] < 2:
            raise ValueError(f"Margin-MSE needs a positive and >= 1 negative per query, got {student_scores.shape[1]} "
                             "candidates")
        student = student_scores.float() / self.student_temperature
        teacher = teacher_scores.detach().float() / self.teacher_temperature
        student_margin = student[:, :1] - student[:, 1:]  # [B, C-1]
        teacher_margin = teacher[:, :1] - teacher[:, 1:]
        squared = (student_margin - teacher_margin) ** 2
        if mask is None:
            return squared.mean()
        check_candidate_scores("mask", mask, like=student_scores)
        keep = mask[:, 1:].to(squared.dtype)
        return (squared * keep).sum() / keep.sum().clamp(min=1.0)
