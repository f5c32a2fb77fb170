"""KL divergence between the teacher's and the student's score distributions over each query's candidates."""

from __future__ import annotations

import torch
from torch import nn

from kd.retrieval.losses.shapes import check_candidate_scores


class DistillKLDivergenceLoss(nn.Module):
    """KL(P_teacher || P_student), averaged over queries.

    For query i with candidates j = 0..C-1 (column 0 the labelled positive, the rest negatives):

        P_teacher[i] = softmax(teacher_scores[i] / teacher_temperature)
        P_student[i] = softmax(student_scores[i] / student_temperature)
        loss = mean_i sum_j P_teacher[i, j] * (log P_teacher[i, j] - log P_student[i, j])

    | input          | shape  | meaning                                                       |
    |----------------|--------|---------------------------------------------------------------|
    | student_scores | [B, C] | cosine similarities in [-1, 1]                                |
    | teacher_scores | [B, C] | sigmoid relevance probabilities in [0, 1] (frozen, no grad)   |
    | mask           | [B, C] | optional bool, True = candidate takes part (default: all)      |
    | query_mask     | [B]    | optional bool, True = query counts (mean over those; 0 if none) |

    Temperatures. A softmax over sigmoid probabilities at T = 1 is almost flat: probabilities span at most
    [0, 1], so the largest possible logit gap is 1 nat and the top candidate can never get more than e = 2.7
    times the weight of the worst. ``teacher_temperature=0.05`` (the same as the student's) puts both score
    sets on one scale: a teacher gap of 0.5 probability and a student gap of 0.5 cosine both become 10 nats,
    so the student is asked to reproduce the teacher's ranking *and* its margins in its own units.
    """

    def __init__(self, teacher_temperature: float = 0.05, student_temperature: float = 0.05):
        super().__init__()
        if teacher_temperature <= 0 or student_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        self.teacher_temperature = teacher_temperature
        self.student_temperature = student_temperature

    def forward(
        self, student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_candidate_scores("student_scores", student_scores)
        check_candidate_scores("teacher_scores", teacher_scores, like=student_scores)
        if mask is not None:
            check_candidate_scores("mask", mask, like=student_scores)
        student_logits = student_scores.float() / self.student_temperature
        teacher_logits = teacher_scores.detach().float() / self.teacher_temperature
        if mask is not None:
            neg_inf = torch.finfo(torch.float32).min
            student_logits = student_logits.masked_fill(~mask, neg_inf)
            teacher_logits = teacher_logits.masked_fill(~mask, neg_inf)
        log_p_student = torch.log_softmax(student_logits, dim=-1)
        log_p_teacher = torch.log_softmax(teacher_logits, dim=-1)
        p_teacher = log_p_teacher.exp()
        terms = p_teacher * (log_p_teacher - log_p_student)
        if mask is not None:
            terms = terms.masked_fill(~mask, 0.0)
        per_query = terms.sum(-1)
        if query_mask is None:
            return per_query.mean()
        if query_mask.shape != per_query.shape:
            raise ValueError(f"query_mask has shape {tuple(query_mask.shape)}, expected {tuple(per_query.shape)}")
        weight = query_mask.to(per_query.dtype)
        return (per_query * weight).sum() / weight.sum().clamp(min=1.0)
