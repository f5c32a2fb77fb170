"""Loss terms of retrieval distillation, one class per file (inputs and shapes in each docstring)."""

from kd.retrieval.losses.contrastive import InfoNCELoss
from kd.retrieval.losses.distillation import DistillationLoss, LossTerms, false_negative_mask
from kd.retrieval.losses.kl_divergence import DistillKLDivergenceLoss
from kd.retrieval.losses.margin_mse import MarginMSELoss
from kd.retrieval.losses.negative_penalty import NegativeHingePenalty

__all__ = [
    "DistillKLDivergenceLoss", "MarginMSELoss", "InfoNCELoss", "NegativeHingePenalty", "DistillationLoss", "LossTerms",
    "false_negative_mask",
]
