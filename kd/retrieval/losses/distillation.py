"""The distillation objective: alpha * KL + beta * contrastive + gamma * negative penalty (+ delta * Margin-MSE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kd.retrieval.losses.contrastive import InfoNCELoss
from kd.retrieval.losses.kl_divergence import DistillKLDivergenceLoss
from kd.retrieval.losses.margin_mse import MarginMSELoss
from kd.retrieval.losses.negative_penalty import NegativeHingePenalty


@dataclass
class LossTerms:
    """Each term (scalars) and the weighted total that is back-propagated."""

    kl: torch.Tensor
    contrastive: torch.Tensor
    penalty: torch.Tensor
    total: torch.Tensor
    kl_coverage: torch.Tensor | None = None  # share of queries the KL term used (see ``kl_gate``)
    margin_mse: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor]:
        out = {"kl": self.kl, "contrastive": self.contrastive, "penalty": self.penalty, "total": self.total}
        if self.margin_mse is not None:
            out["margin_mse"] = self.margin_mse
        if self.kl_coverage is not None:
            out["kl_coverage"] = self.kl_coverage
        return out


def false_negative_mask(teacher_scores: torch.Tensor, margin: float) -> torch.Tensor:
    """Flag candidates the teacher rates (almost) as relevant as the labelled positive.

    teacher_scores: [B, C] sigmoid probabilities, column 0 the positive -> bool [B, C], True where
    candidate j >= 1 has ``teacher[i, j] >= teacher[i, 0] - margin`` (column 0 is never flagged).
    This is the guided false-negative filter of GISTEmbed, with the cross-encoder as the guide.
    """
    flagged = teacher_scores >= (teacher_scores[:, :1] - margin)
    flagged[:, 0] = False
    return flagged


class DistillationLoss(nn.Module):
    """Weighted sum of the terms on one batch: KL, contrastive, penalty and (``margin_mse_weight`` > 0) Margin-MSE.

    | input              | shape     | meaning                                                           |
    |--------------------|-----------|-------------------------------------------------------------------|
    | query_embeddings   | [B, H]    | unit-norm student query vectors                                   |
    | doc_embeddings     | [B, C, H] | unit-norm student vectors of each query's candidates (0 = positive) |
    | teacher_scores     | [B, C]    | frozen teacher scores of the same (query, doc) pairs (any scale:   |
    |                    |           | ``teacher_temperature`` is calibrated on the dev split)            |
    | in_batch_exclude   | [B, B*C]  | bool, True where document n is a known positive of query i        |
    |                    |           | (other than its own column 0) or a copy of it                     |

    ``false_negative_margin=None`` turns the teacher-based false-negative filter off.

    ``kl_gate=True`` applies the KL term only to queries whose teacher ranks the labelled positive first among
    the candidates: where the teacher contradicts the label, its distribution is a known error and copying it
    would teach the student that error (with a strong teacher almost every query passes; with a weak one the
    term falls back towards the labelled contrastive objective). ``LossTerms.kl_coverage`` is the share kept.
    """

    def __init__(
        self,
        kl_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        penalty_weight: float = 0.1,
        student_temperature: float = 0.05,
        teacher_temperature: float = 0.05,
        penalty_margin: float = 0.3,
        false_negative_margin: float | None = 0.0,
        kl_gate: bool = True,
        margin_mse_weight: float = 0.0,
    ):
        super().__init__()
        for name, value in (("kl_weight", kl_weight), ("contrastive_weight", contrastive_weight),
                            ("penalty_weight", penalty_weight), ("margin_mse_weight", margin_mse_weight)):
            if value < 0:
                raise ValueError(f"loss.{name} must be >= 0, got {value}")
        self.kl_weight = kl_weight
        self.contrastive_weight = contrastive_weight
        self.penalty_weight = penalty_weight
        self.margin_mse_weight = margin_mse_weight
        self.false_negative_margin = false_negative_margin
        self.kl_gate = kl_gate
        self.kl = DistillKLDivergenceLoss(teacher_temperature, student_temperature)
        self.contrastive = InfoNCELoss(student_temperature)
        self.penalty = NegativeHingePenalty(penalty_margin)
        self.margin_mse = MarginMSELoss(teacher_temperature, student_temperature)

    def forward(
        self,
        query_embeddings: torch.Tensor,
        doc_embeddings: torch.Tensor,
        teacher_scores: torch.Tensor,
        in_batch_exclude: torch.Tensor | None = None,
    ) -> LossTerms:
        if query_embeddings.dim() != 2 or doc_embeddings.dim() != 3:
            raise ValueError(
                f"expected query_embeddings [B, H] and doc_embeddings [B, C, H], got "
                f"{tuple(query_embeddings.shape)} and {tuple(doc_embeddings.shape)}"
            )
        batch, candidates, hidden = doc_embeddings.shape
        if query_embeddings.shape != (batch, hidden) or teacher_scores.shape != (batch, candidates):
            raise ValueError(
                f"shape mismatch: query_embeddings {tuple(query_embeddings.shape)}, doc_embeddings "
                f"{tuple(doc_embeddings.shape)}, teacher_scores {tuple(teacher_scores.shape)}"
            )
        own_scores = torch.einsum("bh,bch->bc", query_embeddings, doc_embeddings)  # [B, C]
        all_scores = query_embeddings @ doc_embeddings.reshape(batch * candidates, hidden).T  # [B, B*C]

        if self.false_negative_margin is None:
            flagged = torch.zeros_like(teacher_scores, dtype=torch.bool)
        else:
            flagged = false_negative_mask(teacher_scores.detach(), self.false_negative_margin)
        exclude = torch.zeros_like(all_scores, dtype=torch.bool)
        rows = torch.arange(batch, device=all_scores.device)
        own_block = rows[:, None] * candidates + torch.arange(candidates, device=all_scores.device)[None, :]
        exclude[rows[:, None], own_block] = flagged
        if in_batch_exclude is not None:
            exclude |= in_batch_exclude

        zero = own_scores.new_zeros(())
        agrees = teacher_scores.detach().argmax(dim=-1) == 0  # [B] teacher ranks the labelled positive first
        query_mask = agrees if self.kl_gate else None
        kl = self.kl(own_scores, teacher_scores, query_mask=query_mask) if self.kl_weight > 0 else zero
        contrastive = self.contrastive(all_scores, rows * candidates, exclude) if self.contrastive_weight > 0 else zero
        if self.penalty_weight > 0 and candidates > 1:
            penalty = self.penalty(own_scores[:, 1:], ~flagged[:, 1:])
        else:
            penalty = zero
        if self.margin_mse_weight > 0 and candidates > 1:
            margin_mse = self.margin_mse(own_scores, teacher_scores, ~flagged)
        else:
            margin_mse = zero
        total = (self.kl_weight * kl + self.contrastive_weight * contrastive + self.penalty_weight * penalty
                 + self.margin_mse_weight * margin_mse)
        return LossTerms(kl=kl, contrastive=contrastive, penalty=penalty, total=total,
                         kl_coverage=agrees.float().mean() if self.kl_gate else own_scores.new_ones(()),
                         margin_mse=margin_mse if self.margin_mse_weight > 0 else None)
