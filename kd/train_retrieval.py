"""The retrieval distillation run behind ``kd-train``: data -> teacher -> student -> before/after metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from kd.io import atomic_write_json, atomic_write_text
from kd.resources import PeakMemory, Stopwatch

log = logging.getLogger(__name__)

HEADLINE_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def build_logger(cfg: DictConfig):
    """Instantiate ``cfg.logger`` (WandbLogger, CSVLogger, ...) or return False for ``logger=none``."""
    if not cfg.get("logger") or not cfg.logger.get("_target_"):
        return False
    from hydra.utils import instantiate

    return instantiate(cfg.logger)


def load_splits(cfg: DictConfig):
    from kd.data.sources import load_retrieval_data

    data = cfg.data
    return load_retrieval_data(
        format=data.format, path=data.path, train_split=data.train_split, eval_split=data.eval_split,
        triplets=data.triplets, max_train_queries=data.max_train_queries, max_eval_queries=data.max_eval_queries,
        corpus_size=data.corpus_size, seed=cfg.seed, cache_dir=cfg.paths.cache_dir,
    )


def format_table(rows: dict[str, dict[str, float]], metrics=HEADLINE_METRICS) -> str:
    """Markdown table: one row per model, one column per metric."""
    header = "| model | " + " | ".join(metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 1)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values.get(m, float('nan')):.4f}" for m in metrics) + " |")
    return "\n".join(lines)


@dataclass
class Prepared:
    """What every retrieval job builds first: data, teacher (trained if needed), score cache, student, DataModule."""

    splits: Any
    teacher_path: str
    teacher: Any
    score_cache: Any
    student: Any
    datamodule: Any
    timings: dict[str, float]


def prepare(cfg: DictConfig) -> Prepared:
    """Check the config, load the data, make/load the teacher and its score cache, the student and DataModule."""
    from kd.data.datamodule import RetrievalDataModule
    from kd.models.bi_encoder import BiEncoder
    from kd.models.cross_encoder import CrossEncoder
    from kd.precision import check_precision
    from kd.teacher_training import ensure_teacher

    check_precision(cfg.trainer.accelerator, cfg.precision.student, cfg.precision.teacher)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    timings: dict[str, float] = {}
    with Stopwatch() as clock:
        splits = load_splits(cfg)
    timings["load_data_s"] = clock.seconds
    log.info("data: %d docs, %d train / %d eval queries", len(splits.corpus), len(splits.train_queries),
             len(splits.eval_queries))
    with Stopwatch() as clock:
        teacher_path = ensure_teacher(cfg.teacher, splits, cfg.paths.cache_dir, seed=cfg.seed)
        teacher = CrossEncoder.load(teacher_path, max_length=cfg.teacher.max_length, precision=cfg.precision.teacher,
                                    accelerator=cfg.trainer.accelerator)
    timings["teacher_s"] = clock.seconds
    score_cache = None
    if cfg.teacher.get("cache", True):
        from kd.teacher_cache import TeacherScoreCache

        score_cache = TeacherScoreCache(cfg.paths.cache_dir, teacher_path, cfg.precision.teacher, cfg.teacher.max_length)
        log.info("teacher score cache %s: %d pairs", score_cache.path, len(score_cache))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    student = BiEncoder(cfg.student.name_or_path, max_length=cfg.student.max_length)
    data = cfg.data
    datamodule = RetrievalDataModule(
        splits, student, teacher, num_negatives=data.num_negatives, mined_negatives=data.mined_negatives,
        mining=data.mining, mining_depth=data.mining_depth, teacher_filter=data.teacher_filter,
        false_negative_margin=data.false_negative_margin, batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size, num_workers=data.num_workers, seed=cfg.seed, score_cache=score_cache,
        pretokenize=data.get("pretokenize", True), length_buckets=data.get("length_buckets", False),
        doc_group_size=data.get("doc_group_size", None),
    )
    return Prepared(splits, teacher_path, teacher, score_cache, student, datamodule, timings)


def run_training(cfg: DictConfig) -> dict[str, Any]:
    """Run one distillation job as configured; returns the metrics (``before``/``after``) and timings."""
    from hydra.utils import instantiate

    from kd.distillation_module import RetrievalDistillationModule
    from kd.losses.distillation import DistillationLoss

    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "resolved_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    prepared = prepare(cfg)
    splits, teacher_path, teacher = prepared.splits, prepared.teacher_path, prepared.teacher
    score_cache, student, datamodule = prepared.score_cache, prepared.student, prepared.datamodule
    timings = prepared.timings
    data = cfg.data
    loss = DistillationLoss(**OmegaConf.to_container(cfg.loss, resolve=True))
    module = RetrievalDistillationModule(student, teacher, loss, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                         warmup_ratio=cfg.optim.warmup_ratio, eval_batch_size=data.eval_batch_size,
                                         score_cache=score_cache)
    logger = build_logger(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=logger)
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    results: dict[str, Any] = {}
    if cfg.eval_before:
        start = time.perf_counter()
        results["before"] = _strip(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
        timings["eval_before_s"] = time.perf_counter() - start
    with PeakMemory() as memory, Stopwatch() as fit_clock:
        trainer.fit(module, datamodule=datamodule)
    timings["fit_s"] = fit_clock.seconds
    pairs = module.pairs_seen
    results["resources"] = {
        "peak_rss_mb": round(memory.peak_rss_mb, 1), "peak_cuda_mb": round(memory.peak_cuda_mb, 1),
        "train_pairs_per_s": round(pairs / max(fit_clock.seconds, 1e-9), 2),
        "teacher_seconds_per_epoch": [round(t, 2) for t in module.teacher_seconds_per_epoch],
        "teacher_cache": None if score_cache is None else {
            "pairs": len(score_cache), "hits": score_cache.hits, "misses": score_cache.misses},
        "train_pairs": pairs, "precision_student": str(trainer.precision), "precision_teacher": teacher.precision,
    }
    results["train"] = {k.removeprefix("train/").removesuffix("_epoch"): float(v)
                        for k, v in trainer.callback_metrics.items() if k.startswith("train/") and k.endswith("_epoch")}
    start = time.perf_counter()
    results["after"] = _strip(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
    timings["eval_after_s"] = time.perf_counter() - start
    results["timings"] = {k: round(v, 2) for k, v in timings.items()}
    results["teacher"] = teacher_path
    results["data"] = {"docs": len(splits.corpus), "train_queries": len(splits.train_queries),
                       "eval_queries": len(splits.eval_queries), "train_examples": len(datamodule.train_set)}

    if cfg.save_student:
        student.save(output_dir / "student")
    atomic_write_json(output_dir / "metrics.json", results)
    atomic_write_json(output_dir / "eval_run.json", module.last_eval_run, indent=None)  # top-k ids per eval query
    rows = {"student before distillation": results.get("before", {}), "student after distillation": results["after"]}
    table = format_table({k: v for k, v in rows.items() if v})
    print(f"\nRetrieval on {len(splits.eval_queries)} eval queries, {len(splits.corpus)} documents:\n{table}\n"
          f"outputs: {output_dir}")
    if logger and hasattr(logger, "experiment") and type(logger).__name__ == "WandbLogger":
        import wandb

        wandb.finish()
    return results


def _strip(metrics: dict[str, Any]) -> dict[str, float]:
    return {k.removeprefix("val/"): float(v) for k, v in metrics.items()}


def main_metric(results: dict[str, Any], name: str = "ndcg@10") -> float:
    """The number a sweeper optimises: the distilled student's metric ``name``."""
    return float(results["after"][name])

