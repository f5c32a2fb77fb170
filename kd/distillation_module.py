"""LightningModule holding a frozen cross-encoder teacher and a trainable bi-encoder student."""

from __future__ import annotations

import math
import time

import lightning as L
import torch

from kd.losses.distillation import DistillationLoss
from kd.metrics.dense_search import build_index, search
from kd.metrics.retrieval import retrieval_metrics


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; training stops instead of going on silently."""


class RetrievalDistillationModule(L.LightningModule):
    """Distil ``teacher`` (frozen ``CrossEncoder``) into ``student`` (``BiEncoder``).

    ``training_step`` computes ``alpha * KL + beta * contrastive + gamma * penalty`` (``DistillationLoss``) and
    logs each term and the total under ``train/``. Validation encodes the eval corpus with the student, searches
    it with a FAISS inner-product index and logs ``val/recall@1|10|100``, ``val/mrr@10`` and ``val/ndcg@10``.

    The teacher is frozen: eval mode (kept so when Lightning switches the module to train mode), no
    gradients, and its parameters are not given to the optimizer.
    """

    def __init__(self, student, teacher, loss: DistillationLoss, lr: float = 2e-5, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.1, eval_k: int = 100, eval_batch_size: int = 64, score_cache=None):
        super().__init__()
        self.student = student
        self.teacher = teacher.freeze()
        self.loss = loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.eval_k = eval_k
        self.eval_batch_size = eval_batch_size
        self._index = None
        self._doc_ids: list[str] = []
        self._eval_query_ids: list[str] = []
        self._eval_query_vectors: list[torch.Tensor] = []
        self.last_eval_run: dict[str, list[str]] = {}
        self.pairs_seen = 0  # (query, document) pairs trained on, for throughput
        self.score_cache = score_cache  # TeacherScoreCache: each pair is scored by the teacher once
        self.teacher_seconds = 0.0  # time in teacher forward passes during the current epoch
        self.teacher_seconds_per_epoch: list[float] = []

    # ----------------------------------------------------------------------------------------- modes
    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def on_train_epoch_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps module modes as they are:
        # the student trains with dropout, the teacher never does.
        self.student.train()
        self.teacher.eval()
        self.teacher_seconds = 0.0

    def on_train_epoch_end(self) -> None:
        self.teacher_seconds_per_epoch.append(self.teacher_seconds)
        self.log("train/teacher_seconds", self.teacher_seconds, on_epoch=True, on_step=False, reduce_fx="max")
        if self.score_cache is not None and self.trainer.is_global_zero:
            self.score_cache.save()

    # ----------------------------------------------------------------------------------------- training
    def teacher_scores(self, batch: dict) -> torch.Tensor:
        """Sigmoid scores [B, C] of each query's candidates: from the batch (cache) or a no-grad teacher pass."""
        batch_size, candidates = len(batch["query_ids"]), batch["num_candidates"]
        start = time.perf_counter()
        if self.score_cache is not None:
            from kd.teacher_cache import score_with_cache

            scores = score_with_cache(self.score_cache, self.teacher, *batch["pair_texts"]).to(self.device)
        else:
            with torch.no_grad():
                scores = torch.sigmoid(self.teacher(**batch["pairs"]))
        self.teacher_seconds += time.perf_counter() - start
        return scores.view(batch_size, candidates).float()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch_size, candidates = len(batch["query_ids"]), batch["num_candidates"]
        query_vectors = self.student.embed(batch["query"])  # [B, H]
        doc_vectors = self.student.embed(batch["docs"]).view(batch_size, candidates, -1)  # [B, C, H]
        teacher = self.teacher_scores(batch)  # [B, C]
        terms = self.loss(query_vectors, doc_vectors, teacher, batch["in_batch_exclude"])
        self.pairs_seen += batch_size * candidates
        for name, value in terms.as_dict().items():
            if not torch.isfinite(value):
                raise NonFiniteLossError(
                    f"loss term '{name}' is {value.item()} at global step {self.global_step} "
                    f"(epoch {self.current_epoch}, batch {batch_idx}); stopping instead of training on it"
                )
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.as_dict().items()}, batch_size=batch_size,
                      prog_bar=False, on_step=True, on_epoch=True)
        self.log("loss", terms.total.detach(), prog_bar=True, batch_size=batch_size, logger=False)
        return terms.total

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        parameters = [p for p in self.student.parameters() if p.requires_grad]
        # the fused kernel updates all tensors at once (on CPU ~0.1 s less per step for MiniLM than the per-tensor loop)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
                    for p in parameters)
        optimizer = torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay, fused=fused or None)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------------------------------- validation
    def _eval_splits(self):
        return self.trainer.datamodule.splits

    def on_validation_epoch_start(self) -> None:
        splits = self._eval_splits()
        self._doc_ids = list(splits.corpus)
        vectors = self.student.encode([splits.corpus[d] for d in self._doc_ids], batch_size=self.eval_batch_size)
        self._index = build_index(vectors)
        self._eval_query_ids, self._eval_query_vectors = [], []

    def validation_step(self, query_ids: list[str], batch_idx: int) -> None:
        queries = self._eval_splits().eval_queries
        self._eval_query_ids.extend(query_ids)
        self._eval_query_vectors.append(self.student.encode([queries[q] for q in query_ids], self.eval_batch_size))

    def on_validation_epoch_end(self) -> None:
        if not self._eval_query_ids:
            return
        vectors = torch.cat(self._eval_query_vectors)
        run, _ = search(self._index, vectors, self._doc_ids, self._eval_query_ids, self.eval_k)
        self.last_eval_run = run
        qrels = {q: self._eval_splits().eval_qrels[q] for q in self._eval_query_ids}
        metrics = retrieval_metrics(run, qrels)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, batch_size=len(run))
        self._index = None
