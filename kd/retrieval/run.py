"""The retrieval distillation run behind ``kd-train``: data -> teacher -> student -> before/after metrics."""

from __future__ import annotations

import json
import logging
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from kd.config import command_line_keys
from kd.errors import ConfigError
from kd.io import atomic_write_json, atomic_write_text
from kd.resources import PeakMemory, Stopwatch

log = logging.getLogger(__name__)

HEADLINE_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def build_logger(cfg: DictConfig):
    """Instantiate ``cfg.logger`` (WandbLogger, CSVLogger, ...) or return False for ``logger=none``.

    A W&B run gets an id kept in ``<output_dir>/wandb_run_id``: a resumed job logs to the same run, not a new one.
    W&B never blocks training: an unreachable server means an offline run (``kd.wandb_init``).
    """
    if not cfg.get("logger") or not cfg.logger.get("_target_"):
        return False
    from hydra.utils import instantiate

    if cfg.logger._target_.endswith("WandbLogger"):
        from kd.wandb_init import start_wandb_logger

        run_id = wandb_run_id(Path(cfg.paths.output_dir))
        return start_wandb_logger(lambda **kw: instantiate(cfg.logger, id=run_id, resume="allow", **kw),
                                  offline=bool(cfg.logger.get("offline")), run_id=run_id,
                                  save_dir=cfg.logger.get("save_dir") or cfg.paths.output_dir)
    return instantiate(cfg.logger)


def wandb_run_id(output_dir: Path) -> str:
    """The W&B run id of the job in ``output_dir``: read from ``wandb_run_id``, or made and written there."""
    path = output_dir / "wandb_run_id"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits  # W&B's own id alphabet; 36**8 ids
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    atomic_write_text(path, run_id + "\n")
    return run_id


def load_splits(cfg: DictConfig):
    from kd.retrieval.data.sources import load_retrieval_data

    data = cfg.data
    return load_retrieval_data(
        format=data.format, path=data.path, train_split=data.train_split, eval_split=data.eval_split,
        triplets=data.triplets, max_train_queries=data.max_train_queries, max_eval_queries=data.max_eval_queries,
        corpus_size=data.corpus_size, seed=cfg.seed, cache_dir=cfg.paths.cache_dir,
        synthetic=data.get("synthetic"), synthetic_max=data.get("synthetic_max"),
        synthetic_ratio=data.get("synthetic_ratio"),
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
    """What every retrieval job builds first: data, dev split, teacher (trained if needed) and its audit, score
    cache, student, DataModule."""

    splits: Any
    teacher_path: str
    teacher: Any
    score_cache: Any
    student: Any
    datamodule: Any
    timings: dict[str, float]
    dev: Any = None
    built_teacher: Any = None
    audit: dict | None = None
    peaks: dict[str, float] | None = None  # stage -> peak RSS (MiB)


def prepare(cfg: DictConfig) -> Prepared:
    """Check the config, load the data, carve the dev split, make/load the teacher and its score cache, audit it
    against the student on the dev split, build the student and DataModule."""
    from kd.retrieval.data.datamodule import RetrievalDataModule
    from kd.retrieval.models.bi_encoder import BiEncoder
    from kd.retrieval.config_validation import validate_train_config
    from kd.precision import check_precision
    from kd.retrieval.dev_split import carve_dev_split
    from kd.retrieval.teachers import build_teacher, check_teacher_config

    validate_train_config(cfg)
    check_teacher_config(cfg.teacher)
    check_precision(cfg.trainer.accelerator, cfg.precision.student, cfg.precision.teacher)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    timings: dict[str, float] = {}
    peaks: dict[str, float] = {}  # stage -> peak RSS (MiB) while it ran, metrics.json["resources"]
    with Stopwatch() as clock, PeakMemory() as memory:
        splits = load_splits(cfg)
        splits, dev = carve_dev_split(splits, float(cfg.data.get("dev_fraction", 0.0)), seed=cfg.seed)
    timings["load_data_s"], peaks["load_data"] = clock.seconds, memory.peak_rss_mb
    log.info("data: %d docs, %d train / %d dev / %d eval queries", len(splits.corpus), len(splits.train_queries),
             0 if dev is None else len(dev), len(splits.eval_queries))
    with Stopwatch() as clock, PeakMemory() as memory:
        built = build_teacher(cfg.teacher, splits, dev, cfg.paths.cache_dir, seed=cfg.seed,
                              precision=cfg.precision.teacher, accelerator=cfg.trainer.accelerator)
        teacher = built.teacher
    timings["teacher_s"], peaks["teacher"] = clock.seconds, memory.peak_rss_mb
    score_cache = None
    if cfg.teacher.get("cache", True):
        from kd.retrieval.teacher_cache import TeacherScoreCache

        score_cache = TeacherScoreCache(cfg.paths.cache_dir, identity=built.identity)
        log.info("teacher score cache %s: %d pairs", score_cache.path, len(score_cache))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    checkpointing = bool(cfg.student.get("gradient_checkpointing", False))
    if checkpointing and cfg.loss.get("grad_cache_chunk") is not None:
        # GradCache already bounds the activations to one chunk's; checkpointing would add a third forward pass
        log.info("loss.grad_cache_chunk is set: student.gradient_checkpointing is not needed and is turned off")
        checkpointing = False
    student = BiEncoder(cfg.student.name_or_path, max_length=cfg.student.max_length,
                        gradient_checkpointing=checkpointing)
    audit = None
    if dev is not None and cfg.teacher.get("audit", True):
        with Stopwatch() as clock, PeakMemory() as memory:
            audit = run_teacher_audit(cfg, teacher, score_cache, student, splits, dev, built)
        timings["teacher_audit_s"], peaks["teacher_audit"] = clock.seconds, memory.peak_rss_mb
    data = cfg.data
    datamodule = RetrievalDataModule(
        splits, student, teacher, num_negatives=data.num_negatives, mined_negatives=data.mined_negatives,
        mining=data.mining, mining_depth=data.mining_depth, teacher_filter=data.teacher_filter,
        false_negative_margin=data.false_negative_margin, batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size, num_workers=data.num_workers, seed=cfg.seed, score_cache=score_cache,
        pretokenize=data.get("pretokenize", True), length_buckets=data.get("length_buckets", False),
        doc_group_size=data.get("doc_group_size", None),
    )
    teacher_path = built.info.get("path", built.description)
    return Prepared(splits, teacher_path, teacher, score_cache, student, datamodule, timings, dev, built, audit, peaks)


def run_teacher_audit(cfg: DictConfig, teacher, score_cache, student, splits, dev, built) -> dict:
    """Teacher vs untrained student on the dev split (``kd.retrieval.teacher_audit``): printed, logged, refused
    with ``teacher.require_better=true`` when the teacher is not the better ranker."""
    from kd.retrieval.teacher_audit import audit_teacher
    from kd.retrieval.teacher_cache import score_with_cache

    def scorer(queries, documents):
        if score_cache is None:
            return teacher.score(queries, documents, batch_size=cfg.teacher.score_batch_size).tolist()
        return score_with_cache(score_cache, teacher, queries, documents, cfg.teacher.score_batch_size).tolist()

    audit = audit_teacher(scorer, student, splits.corpus, dev, depth=int(cfg.teacher.get("audit_depth", 30)),
                          batch_size=cfg.data.eval_batch_size, student_temperature=float(cfg.loss.student_temperature))
    audit["teacher_description"] = built.description
    if "fusion" in built.info:
        audit["fusion"] = built.info["fusion"]
    if score_cache is not None:
        score_cache.save()
    t, s = audit["teacher"], audit["student"]
    print(f"teacher audit on {audit['queries']} dev queries (reranking BM25 top-{audit['depth']}): "
          f"teacher nDCG@10 {t['ndcg@10']:.4f} recall@10 {t['recall@10']:.4f} | untrained student nDCG@10 "
          f"{s['ndcg@10']:.4f} recall@10 {s['recall@10']:.4f} | teacher: {built.description}; fitted teacher "
          f"temperature {audit['calibration']['teacher_temperature']:.4g}", flush=True)
    if not audit["teacher_better"]:
        message = (f"THE TEACHER IS NOT BETTER THAN THE STUDENT on the dev split (nDCG@10 {t['ndcg@10']:.4f} vs "
                   f"{s['ndcg@10']:.4f}): distilling it is likely to make the student worse")
        if cfg.teacher.get("require_better", False):
            raise ConfigError(message + "; teacher.require_better=true refuses to start")
        log.warning("%s\n%s\n%s", "!" * 100, message, "!" * 100)
    return audit


def run_training(cfg: DictConfig) -> dict[str, Any]:
    """Run one distillation job as configured; returns the metrics (``before``/``after``) and timings."""
    from hydra.utils import instantiate

    from kd.retrieval.distillation_module import RetrievalDistillationModule
    from kd.retrieval.checkpointing import checkpoint_callback

    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them
    from kd.allocator import fix_mmap_threshold

    fix_mmap_threshold()  # freed activations go back to the OS instead of fragmenting glibc's heaps (kd/allocator.py)
    cfg, resume_from = resolve_resume(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if resume_from is None:
        atomic_write_text(output_dir / "resolved_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    prepared = prepare(cfg)
    splits, teacher_path, teacher = prepared.splits, prepared.teacher_path, prepared.teacher
    score_cache, student, datamodule = prepared.score_cache, prepared.student, prepared.datamodule
    timings, peaks = prepared.timings, dict(prepared.peaks or {})
    data = cfg.data
    gather = bool(cfg.loss.get("gather_across_devices", True))
    loss, _, calibration = build_loss(cfg, prepared.audit)
    index = OmegaConf.to_container(cfg.index, resolve=True) if cfg.get("index") else None
    module = RetrievalDistillationModule(student, teacher, loss, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                         warmup_ratio=cfg.optim.warmup_ratio, eval_batch_size=data.eval_batch_size,
                                         score_cache=score_cache, on_nonfinite=cfg.optim.get("on_nonfinite", "stop"),
                                         gather_across_devices=gather, index=index,
                                         grad_cache_chunk=cfg.loss.get("grad_cache_chunk"))
    logger = build_logger(cfg)
    checkpoints = checkpoint_callback(cfg.get("checkpoint", {}).get("every_n_train_steps"), output_dir)
    callbacks = [*instantiate(cfg.trainer.get("callbacks") or []), *([checkpoints] if checkpoints else [])]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks,
                                     enable_checkpointing=checkpoints is not None)
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if prepared.audit:
            audit = prepared.audit
            logger.log_metrics({f"audit/{who}_{k}": v for who in ("teacher", "student") for k, v in audit[who].items()}
                               | {"audit/teacher_temperature": calibration["teacher_temperature"]}, step=0)

    results: dict[str, Any] = {}
    before_path = output_dir / "metrics_before.json"
    if cfg.eval_before and resume_from is not None and before_path.is_file():
        results["before"] = json.loads(before_path.read_text())  # measured by the run being resumed
    elif cfg.eval_before:
        start = time.perf_counter()
        with PeakMemory() as memory:  # the first validate also sets the data up (mining, pre-tokenising)
            results["before"] = _strip(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
        timings["eval_before_s"], peaks["eval_before"] = time.perf_counter() - start, memory.peak_rss_mb
        atomic_write_json(before_path, results["before"])
    with PeakMemory() as memory, Stopwatch() as fit_clock:
        trainer.fit(module, datamodule=datamodule, ckpt_path=None if resume_from is None else str(resume_from))
    timings["fit_s"], peaks["fit"] = fit_clock.seconds, memory.peak_rss_mb
    pairs = module.pairs_seen * trainer.world_size  # every process trains on an equal share (distributed sampler)
    results["resources"] = {
        "peak_rss_mb": round(memory.peak_rss_mb, 1), "peak_cuda_mb": round(memory.peak_cuda_mb, 1),
        "train_pairs_per_s": round(pairs / max(fit_clock.seconds, 1e-9), 2),
        "teacher_seconds_per_epoch": [round(t, 2) for t in module.teacher_seconds_per_epoch],
        "teacher_cache": None if score_cache is None else {
            "pairs": len(score_cache), "hits": score_cache.hits, "misses": score_cache.misses},
        "train_pairs": pairs, "skipped_batches": module.skipped_batches,
        "precision_student": str(trainer.precision), "precision_teacher": teacher.precision,
        "processes": trainer.world_size, "train_steps": trainer.global_step,
    }
    results["train"] = {k.removeprefix("train/").removesuffix("_epoch"): float(v)
                        for k, v in trainer.callback_metrics.items() if k.startswith("train/") and k.endswith("_epoch")}
    results["train_steps"] = module.terms_over_steps()  # this process's first vs last steps (a resumed run: since)
    start = time.perf_counter()
    with PeakMemory() as memory:
        results["after"] = _strip(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
    timings["eval_after_s"], peaks["eval_after"] = time.perf_counter() - start, memory.peak_rss_mb
    results["resources"]["stage_peak_rss_mb"] = {k: round(v, 1) for k, v in peaks.items()}
    results["timings"] = {k: round(v, 2) for k, v in timings.items()}
    if resume_from is not None:
        results["resumed_from"] = str(resume_from)
    results["teacher"] = teacher_path
    results["teacher_kind"] = prepared.built_teacher.kind if prepared.built_teacher else None
    if prepared.audit is not None:
        results["teacher_audit"] = prepared.audit
    results["calibration"] = calibration
    results["data"] = {"docs": len(splits.corpus), "train_queries": len(splits.train_queries),
                       "eval_queries": len(splits.eval_queries), "train_examples": len(datamodule.train_set)}
    if splits.synthetic_info:
        results["data"]["synthetic"] = splits.synthetic_info

    if not trainer.is_global_zero:  # under DDP only rank 0 writes the outputs
        return results
    if cfg.save_student:
        from kd.retrieval.models.model_card import write_model_card

        student.save(output_dir / "student")  # a sentence-transformers folder
        write_model_card(output_dir / "student", cfg, results)
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


def build_loss(cfg: DictConfig, audit: dict | None = None, **settings):
    """``DistillationLoss`` from ``cfg.loss`` (+ ``settings``), as every kd job builds it.

    ``gather_across_devices`` is a module option, not a loss argument; ``teacher_temperature=auto`` becomes the
    temperature fitted on the dev split (``audit`` from ``prepare``; see ``teacher_temperature``).
    Returns (loss, its keyword arguments, the calibration record written to ``metrics.json``)."""
    from kd.retrieval.losses.distillation import DistillationLoss

    options = {**OmegaConf.to_container(cfg.loss, resolve=True), **settings}
    options.pop("gather_across_devices", None)
    options.pop("grad_cache_chunk", None)  # a module option too: how the student's encoding is chunked
    if "teacher_temperature" in settings:
        calibration = {"teacher_temperature": float(settings["teacher_temperature"]), "source": "given"}
    else:
        options["teacher_temperature"], calibration = teacher_temperature(cfg, audit)
    return DistillationLoss(**options), options, calibration


def teacher_temperature(cfg: DictConfig, audit: dict | None) -> tuple[float, dict]:
    """The teacher temperature of the KL / Margin-MSE terms and where it came from.

    ``loss.teacher_temperature=auto`` (default) takes the temperature fitted on the dev split
    (``teacher_audit.fit_teacher_temperature``: the teacher's scores / T best predict the dev labels), so every
    teacher's scores reach the loss on one calibrated logit scale. Without a dev split auto falls back to 0.05 (the
    scale of a sigmoid teacher against a cosine student at 0.05) with a warning; a number is used as given.
    """
    value = cfg.loss.teacher_temperature
    if value != "auto":
        return float(value), {"teacher_temperature": float(value), "source": "config"}
    if audit is None:
        log.warning("loss.teacher_temperature=auto without a dev split (data.dev_fraction=0 or teacher.audit=false):"
                    " using 0.05, which suits a sigmoid cross-encoder teacher only")
        return 0.05, {"teacher_temperature": 0.05, "source": "fallback (no dev split)"}
    fitted = audit["calibration"]
    return float(fitted["teacher_temperature"]), {**fitted, "source": "fitted on the dev split"}


def resolve_resume(cfg: DictConfig) -> tuple[DictConfig, Path | None]:
    """(config to run, checkpoint to resume from or None) for ``cfg.resume``.

    Resuming continues the earlier run in its own folder with its own saved config (``resolved_config.yaml``);
    overrides given with ``resume=`` that differ from it are reported and ignored, so the resumed run is the run
    that was killed.
    """
    resume = cfg.get("resume")
    if not resume:
        return cfg, None
    from kd.retrieval.checkpointing import find_resume_checkpoint

    outputs_root = Path(cfg.paths.output_dir).parent
    run_dir, checkpoint = find_resume_checkpoint(str(resume), outputs_root)
    saved_path = run_dir / "resolved_config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"resume={resume}: {saved_path} is missing, so the run's config is unknown")
    saved = OmegaConf.load(saved_path)
    ignored = [f"{key}={OmegaConf.select(cfg, key)} (the run has {OmegaConf.select(saved, key)})"
               for key in command_line_keys() if key not in ("resume", "run_name") and not key.startswith("paths.")
               and OmegaConf.select(cfg, key) != OmegaConf.select(saved, key)]
    if ignored:
        log.warning("resume: the run continues with its own saved config; ignoring %s", ", ".join(ignored))
    saved.resume = str(checkpoint)
    saved.paths.output_dir = str(run_dir)
    log.info("resuming %s from %s", run_dir, checkpoint)
    return saved, checkpoint



def _strip(metrics: dict[str, Any]) -> dict[str, float]:
    return {k.removeprefix("val/"): float(v) for k, v in metrics.items()}


def main_metric(results: dict[str, Any], name: str = "ndcg@10") -> float:
    """The number a sweeper optimises: the distilled student's metric ``name``."""
    return float(results["after"][name])

