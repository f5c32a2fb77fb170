"""Cross-encoder teacher: the concatenated (query, document) pair goes through one transformer.

"[CLS] query [SEP] document [SEP]" --AutoModelForSequenceClassification (num_labels=1)--> logit [N]
--sigmoid--> relevance probability in [0, 1] [N].

As a distillation teacher it is frozen: ``freeze()`` puts it in eval mode, turns off gradients, and the
LightningModule never hands its parameters to the optimizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from kd.packaged_models import resolve_model


class CrossEncoder(nn.Module):
    """(query, document) -> relevance logit; ``score`` returns sigmoid probabilities.

    Args:
        name_or_path: a trained cross-encoder (HF id such as ``cross-encoder/ms-marco-MiniLM-L-6-v2`` or a local
            folder), or an encoder to start training one from (``packaged:minilm``: the head is then new).
        max_length: tokens kept per concatenated pair (the document is truncated first).
        model_kwargs: passed to ``from_pretrained`` (``dtype``, ``quantization_config``, ``device_map``).
    """

    def __init__(self, name_or_path: str, max_length: int = 256, **model_kwargs):
        super().__init__()
        path = resolve_model(name_or_path)
        self.name_or_path = name_or_path
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **model_kwargs)
        self.precision = "fp32"

    @classmethod
    def load(cls, name_or_path: str, max_length: int = 256, precision: str = "fp32", accelerator: str = "cpu"
             ) -> "CrossEncoder":
        """Load a teacher in ``precision`` (``fp32``, ``bf16``, ``fp16``, ``int8``, ``nf4``; see ``kd.precision``)."""
        from kd.precision import quantize_teacher, teacher_load_kwargs

        teacher = cls(name_or_path, max_length=max_length, **teacher_load_kwargs(precision, accelerator))
        teacher.model = quantize_teacher(teacher.model, precision, accelerator)
        teacher.precision = precision
        return teacher

    def tokenize(self, queries: Sequence[str], documents: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pairs -> ``input_ids``/``attention_mask``/``token_type_ids`` [N, L]; truncates the document side."""
        if len(queries) != len(documents):
            raise ValueError(f"got {len(queries)} queries for {len(documents)} documents")
        return dict(
            self.tokenizer(
                list(queries), list(documents), padding=True, truncation="longest_first",
                max_length=self.max_length, return_tensors="pt",
            )
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Tokenised pairs [N, L] -> relevance logits [N] (float32)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits.squeeze(-1).float()

    def freeze(self) -> "CrossEncoder":
        """Eval mode and no gradients: the teacher's weights cannot change."""
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self

    @torch.no_grad()
    def score(self, queries: Sequence[str], documents: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Sigmoid relevance of each pair -> [N] float32 on CPU, in input order.

        Pairs are scored longest first so that batches pad to similar lengths.
        """
        was_training = self.training
        self.eval()
        device = next(self.model.parameters(), torch.empty(0)).device
        order = sorted(range(len(queries)), key=lambda i: -(len(queries[i]) + len(documents[i])))
        out = torch.empty(len(queries), dtype=torch.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenize([queries[i] for i in idx], [documents[i] for i in idx])
            out[idx] = torch.sigmoid(self(**{k: v.to(device) for k, v in batch.items()})).cpu()
        self.train(was_training)
        return out

    def save(self, folder: str | Path) -> None:
        """Save model and tokenizer so that ``CrossEncoder(folder)`` loads them back (with the trained head)."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
