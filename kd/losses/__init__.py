"""Loss terms of retrieval distillation, one class per file (inputs and shapes in each docstring)."""

from kd.losses.contrastive import InfoNCELoss
from kd.losses.distillation import DistillationLoss, LossTerms, false_negative_mask
from kd.losses.kl_divergence import DistillKLDivergenceLoss
from kd.losses.negative_penalty import NegativeHingePenalty

__all__ = [
    "DistillKLDivergenceLoss", "InfoNCELoss", "NegativeHingePenalty", "DistillationLoss", "LossTerms",
    "false_negative_mask",
]
