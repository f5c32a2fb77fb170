"""LightningModule holding a frozen teacher (cross-encoder, bi-encoder, BM25 or ensemble) and a trainable bi-encoder
student."""

from __future__ import annotations

import logging
import math
import time

import lightning as L
import torch

from kd import distributed
from kd.retrieval.data.collate import known_positive_mask
from kd.retrieval.losses.distillation import DistillationLoss
from kd.retrieval.metrics.dense_search import build_index, search
from kd.retrieval.metrics.retrieval import retrieval_metrics

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; training stops instead of going on silently."""


class RetrievalDistillationModule(L.LightningModule):
    """Distil ``teacher`` (frozen ``CrossEncoder``) into ``student`` (``BiEncoder``).

    ``training_step`` computes ``alpha * KL + beta * contrastive + gamma * penalty`` (``DistillationLoss``) and
    logs each term and the total under ``train/``. Validation encodes the eval corpus with the student, searches
    it with a FAISS inner-product index and logs ``val/recall@1|10|100``, ``val/mrr@10`` and ``val/ndcg@10``.

    The teacher is frozen: eval mode (kept so when Lightning switches the module to train mode), no
    gradients, and its parameters are not given to the optimizer.

    Several processes (``trainer=ddp``): with ``gather_across_devices`` every rank gathers all ranks' query and
    document embeddings (gradient flows back to its own shard), teacher scores and in-batch masks, and computes
    the loss of the global batch, so the contrastive term has W·B·C in-batch documents and the 2-process loss
    and (DDP-averaged) gradients equal one process on the concatenated batch (``kd/distributed.py``).
    Validation then encodes 1/W of the corpus per rank and gathers the vectors and the per-rank queries.
    ``index`` (a ``conf/index`` mapping or ``IndexSpec``; default flat) picks the FAISS index.

    ``grad_cache_chunk=N`` (``loss.grad_cache_chunk``) embeds the batch with GradCache (``kd/retrieval/grad_cache.py``):
    no-grad forwards of N texts at a time, the loss on the cached embeddings, then per chunk a forward with grad and
    backward, run from the hook on the returned loss when Lightning calls ``backward``, so gradient clipping,
    accumulation, precision and logging are Lightning's as without it. Single process only.
    """

    def __init__(self, student, teacher, loss: DistillationLoss, lr: float = 2e-5, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.1, eval_k: int = 100, eval_batch_size: int = 64, score_cache=None,
                 on_nonfinite: str = "stop", gather_across_devices: bool = True, index=None,
                 grad_cache_chunk: int | None = None):
        super().__init__()
        if grad_cache_chunk is not None and (isinstance(grad_cache_chunk, bool) or not isinstance(grad_cache_chunk, int)
                                             or grad_cache_chunk < 1):
            raise ValueError(f"loss.grad_cache_chunk must be null or an integer >= 1, got {grad_cache_chunk!r}")
        self.grad_cache_chunk = grad_cache_chunk  # None: one forward with autograd; N: GradCache in chunks of N texts
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite  # a NaN/Inf loss term or gradient: stop training, or skip that batch
        self.skipped_batches = 0
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
        self.step_terms: list[dict[str, float]] = []  # every training step's loss terms (metrics.json: first/last)
        self.score_cache = score_cache  # TeacherScoreCache: each pair is scored by the teacher once
        self.teacher_seconds = 0.0  # time in teacher forward passes during the current epoch
        self.teacher_seconds_per_epoch: list[float] = []
        self._rng_to_restore = None  # RNG states from a checkpoint, applied at the first resumed batch
        self._loader_state_to_restore = None  # the training loader's position from a checkpoint (on_train_start)
        self.gather_across_devices = gather_across_devices
        self.index_spec = index

    # ----------------------------------------------------------------------------------------- modes
    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def on_train_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps module modes as they are:
        # the student trains with dropout, the teacher never does. (on_train_start also runs when a run resumes
        # mid-epoch, where Lightning skips on_train_epoch_start.)
        self.student.train()
        self.teacher.eval()
        if self._loader_state_to_restore:  # resuming: continue the epoch after the batches already trained on
            loader = self.trainer.train_dataloader
            if hasattr(loader, "load_state_dict"):
                loader.load_state_dict(self._loader_state_to_restore[0])
            self._loader_state_to_restore = None

    def on_train_epoch_start(self) -> None:
        self.student.train()
        self.teacher.eval()
        self.teacher_seconds = 0.0

    def on_train_epoch_end(self) -> None:
        self.teacher_seconds_per_epoch.append(self.teacher_seconds)
        self.log("train/teacher_seconds", self.teacher_seconds, on_epoch=True, on_step=False, reduce_fx="max")
        if self.score_cache is None:
            return
        if distributed.is_distributed():  # every rank scored its own new pairs: rank 0 merges them all
            world, rank = distributed.world_size(), distributed.rank()
            self.score_cache.write_shard(list(self.score_cache.scores), list(self.score_cache.scores.values()),
                                         rank, world)
            distributed.barrier()
            if rank == 0:
                self.score_cache.merge_shards(world)
            distributed.barrier()
        elif self.trainer.is_global_zero:
            self.score_cache.save()

    # ----------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Leave the frozen teacher out, add the RNG states, flush the teacher score cache (kd/checkpointing)."""
        from kd.retrieval.checkpointing import capture_rng_state

        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}
        checkpoint["kd"] = {"rng": capture_rng_state(), "pairs_seen": self.pairs_seen,
                            "skipped_batches": self.skipped_batches}
        if self.score_cache is not None and self.trainer.is_global_zero:
            self.score_cache.save()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # the teacher was left out on save: put the loaded teacher's own weights back so loading stays strict
        checkpoint["state_dict"].update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})
        saved = checkpoint.get("kd", {})
        self.pairs_seen = int(saved.get("pairs_seen", 0))
        self.skipped_batches = int(saved.get("skipped_batches", 0))
        self._rng_to_restore = saved.get("rng")
        self._loader_state_to_restore = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get(
            "combined_loader")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # restored here, not on load: the loop draws from the RNG when it creates the epoch's iterator, which the
        # killed run did before its checkpoint was written
        if self._rng_to_restore is not None:
            from kd.retrieval.checkpointing import restore_rng_state

            restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    # ----------------------------------------------------------------------------------------- training
    def teacher_scores(self, batch: dict) -> torch.Tensor:
        """Teacher scores [B, C] of each query's candidates: from the score cache or a no-grad teacher pass."""
        batch_size, candidates = len(batch["query_ids"]), batch["num_candidates"]
        start = time.perf_counter()
        if self.score_cache is not None:
            from kd.retrieval.teacher_cache import score_with_cache

            scores = score_with_cache(self.score_cache, self.teacher, *batch["pair_texts"]).to(self.device)
        elif "pairs" in batch:  # a cross-encoder on the collated pair tokens
            with torch.no_grad():
                scores = torch.sigmoid(self.teacher(**batch["pairs"]))
        else:  # a corpus teacher (BM25, bi-encoder, ensemble) scores the texts
            scores = self.teacher.score(*batch["pair_texts"]).to(self.device)
        self.teacher_seconds += time.perf_counter() - start
        return scores.view(batch_size, candidates).float()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch_size, candidates = len(batch["query_ids"]), batch["num_candidates"]
        cache = None
        if self.grad_cache_chunk is not None:
            from kd.retrieval.grad_cache import GradCache

            if distributed.is_distributed():
                raise RuntimeError("loss.grad_cache_chunk is single-process only; set it to null under trainer=ddp")
            cache = GradCache(self.student, self.grad_cache_chunk, self.device)
            query_vectors = cache.encode(batch["query"])  # [B, H], no activations kept
            doc_vectors = cache.encode(batch["docs"]).view(batch_size, candidates, -1)  # [B, C, H]
        else:
            query_vectors = self.student.embed(batch["query"])  # [B, H]
            doc_vectors = self.student.embed(batch["docs"]).view(batch_size, candidates, -1)  # [B, C, H]
        teacher = self.teacher_scores(batch)  # [B, C]
        exclude = batch["in_batch_exclude"]
        if self.gather_across_devices and distributed.is_distributed():
            query_vectors, doc_vectors, teacher, exclude = self.gather_batch(query_vectors, doc_vectors, teacher, batch)
        terms = self.loss(query_vectors, doc_vectors, teacher, exclude)
        self.pairs_seen += batch_size * candidates
        for name, value in terms.as_dict().items():
            if not torch.isfinite(value):
                where = f"at global step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
                if self.on_nonfinite == "skip":
                    self.skipped_batches += 1
                    log.warning("loss term '%s' is %s %s: batch skipped (%d so far)", name, value.item(), where,
                                self.skipped_batches)
                    return None  # Lightning then skips backward and the optimizer step
                raise NonFiniteLossError(
                    f"loss term '{name}' is {value.item()} {where}; stopping instead of training on it "
                    f"(optim.on_nonfinite=skip skips such batches)"
                )
        self.step_terms.append({k: float(v.detach()) for k, v in terms.as_dict().items()})
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.as_dict().items()}, batch_size=batch_size,
                      prog_bar=False, on_step=True, on_epoch=True)
        self.log("loss", terms.total.detach(), prog_bar=True, batch_size=batch_size, logger=False)
        return terms.total if cache is None else cache.attach(terms.total)

    def terms_over_steps(self, steps: int = 3) -> dict[str, dict[str, float]]:
        """Mean loss terms of the first and of the last ``steps`` training steps of this process (did the student
        move towards the teacher: ``kl`` last < first)."""
        def mean(rows: list[dict[str, float]]) -> dict[str, float]:
            return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}

        return {"first": mean(self.step_terms[:steps]), "last": mean(self.step_terms[-steps:]), "steps": steps}

    def on_before_optimizer_step(self, optimizer) -> None:
        """A finite loss can still give NaN/Inf gradients (overflow): stop, or drop this step's update."""
        if str(self.trainer.precision) == "16-mixed":
            return  # the GradScaler already skips overflowing steps and lowers its scale
        grads = [p.grad for p in self.student.parameters() if p.grad is not None]
        if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return
        bad = [n for n, p in self.student.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        where = f"at global step {self.global_step} (epoch {self.current_epoch})"
        if self.on_nonfinite == "skip":
            for p in self.student.parameters():
                p.grad = None  # AdamW leaves parameters without a gradient untouched: no update at all
            self.skipped_batches += 1
            log.warning("non-finite gradient in %d tensors %s: update skipped", len(bad), where)
            return
        raise NonFiniteLossError(f"gradient of student.{bad[0]} (and {len(bad) - 1} more tensors) is not finite "
                                 f"{where}; stopping instead of training on it (optim.on_nonfinite=skip skips such "
                                 f"steps)")

    @staticmethod
    def gather_batch(query_vectors: torch.Tensor, doc_vectors: torch.Tensor, teacher: torch.Tensor, batch: dict):
        """Local [B, H], [B, C, H], [B, C] -> the global batch [W·B, H], [W·B, C, H], [W·B, C] and its in-batch
        exclusion mask [W·B, W·B·C] (rank order), as if one process had collated all ranks' examples."""
        batch_size, candidates = doc_vectors.shape[:2]
        all_doc_keys = distributed.gather_no_grad(batch["doc_keys"].to(doc_vectors.device), "doc_keys")
        offset = distributed.rank() * batch_size
        own_columns = (offset + torch.arange(batch_size, device=doc_vectors.device)) * candidates
        local_rows = known_positive_mask(batch["positive_keys"], all_doc_keys, own_columns)  # [B, W·B·C]
        return (distributed.gather_with_grad(query_vectors, "query embeddings"),
                distributed.gather_with_grad(doc_vectors, "document embeddings"),
                distributed.gather_no_grad(teacher, "teacher scores"),
                distributed.gather_no_grad(local_rows, "in-batch masks"))

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        parameters = [p for p in self.student.parameters() if p.requires_grad]
        # the fused kernel updates all tensors at once (on CPU ~0.1 s less per step for MiniLM than the per-tensor loop)
        # (not under mixed precision: Lightning's gradient clipping must unscale the gradients first, which a fused
        # optimizer does internally, and Lightning refuses the combination)
        fused = "mixed" not in str(self.trainer.precision) and all(
            p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
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
        self._index = build_index(self._encode_corpus_sharded([splits.corpus[d] for d in self._doc_ids]),
                                  self.index_spec)
        self._eval_query_ids, self._eval_query_vectors = [], []

    def _encode_corpus_sharded(self, texts: list[str]) -> torch.Tensor:
        """[N, H]: each of the W ranks encodes its slice of the corpus, then the slices are gathered."""
        from kd.retrieval.metrics.corpus_shards import shard_bounds

        world, rank = distributed.world_size(), distributed.rank()
        start, stop = shard_bounds(len(texts), rank, world)
        local = self.student.encode(texts[start:stop], batch_size=self.eval_batch_size)
        if world == 1:
            return local
        longest = -(-len(texts) // world)  # slices differ by at most one: pad to the longest to gather
        padded = torch.zeros(longest, local.shape[1], dtype=local.dtype)
        padded[: len(local)] = local
        gathered = distributed.gather_no_grad(padded.to(self.device), "corpus slices").cpu().view(world, longest, -1)
        return torch.cat([gathered[r, : b - a] for r, (a, b) in
                          enumerate(shard_bounds(len(texts), r, world) for r in range(world))])

    def validation_step(self, query_ids: list[str], batch_idx: int) -> None:
        queries = self._eval_splits().eval_queries
        self._eval_query_ids.extend(query_ids)
        self._eval_query_vectors.append(self.student.encode([queries[q] for q in query_ids], self.eval_batch_size))

    def on_validation_epoch_end(self) -> None:
        local_vectors = torch.cat(self._eval_query_vectors) if self._eval_query_vectors else torch.empty(0)
        ids, vectors, seen = [], [], set()
        for rank_ids, rank_vectors in distributed.gather_objects((self._eval_query_ids, local_vectors)):
            for query_id, vector in zip(rank_ids, rank_vectors):
                if query_id not in seen:  # the distributed sampler repeats queries to even out the ranks
                    seen.add(query_id)
                    ids.append(query_id)
                    vectors.append(vector)
        if not ids:
            return
        run, _ = search(self._index, torch.stack(vectors), self._doc_ids, ids, self.eval_k)
        self.last_eval_run = run
        qrels = {q: self._eval_splits().eval_qrels[q] for q in ids}
        metrics = retrieval_metrics(run, qrels)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, batch_size=len(run))
        self._index = None
