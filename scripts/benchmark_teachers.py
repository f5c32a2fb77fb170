"""SciFact (BEIR split): offline teachers and the students distilled from them, every row on the same budget.

Part A, teachers (their own quality on the 300 test claims, full 5183-abstract corpus):
BM25, frozen all-MiniLM-L6-v2, frozen all-mpnet-base-v2, the fusions of BM25 + MiniLM and BM25 + MiniLM + mpnet
(method and weights chosen on the dev split: 10 % of the train claims, seeded, never test), and optionally the
cross-encoders (``--cross-encoders``: kd's cross-encoder trained on the labels, and one distilled from the fusion;
both rerank BM25's top-100).

Part B, students (all-MiniLM-L6-v2, 1 epoch, batch 16, lr 2e-5, 256 tokens, the same training groups: each
train claim's positive + 2 negatives mined from the teacher's top-30 after its false-negative filter + 1 random,
the same teacher scores, the same calibrated teacher temperature fitted on dev): untrained, kd contrastive-only,
kd KL-only, kd three-term, kd Margin-MSE (+ contrastive), ST ``MultipleNegativesRankingLoss`` (no teacher),
ST ``MarginMSELoss`` and ``DistillKLDivLoss`` on the same (calibrated) teacher scores.

Resumable: every row is written atomically to ``<out>/rows/<row>.json`` and skipped when present.

    OMP_NUM_THREADS=2 python scripts/benchmark_teachers.py --out outputs/benchmark_teachers
    python scripts/benchmark_teachers.py --smoke          # tiny data, tiny model, seconds (run by the tests)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from hydra import compose, initialize_config_dir  # noqa: E402

import kd.config  # noqa: E402,F401
from kd.io import atomic_write_json, atomic_write_text  # noqa: E402

log = logging.getLogger("benchmark_teachers")
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")

# Part A: row -> (label, teacher config option or kind)
TEACHER_ROWS: dict[str, tuple[str, str]] = {
    "t_bm25": ("BM25 (bm25s)", "bm25"),
    "t_minilm": ("all-MiniLM-L6-v2, frozen (= the untrained student)", "minilm"),
    "t_mpnet": ("all-mpnet-base-v2, frozen", "mpnet"),
    "t_fusion2": ("fusion BM25 + MiniLM (dev-chosen)", "ensemble"),
    "t_fusion3": ("fusion BM25 + MiniLM + mpnet (dev-chosen)", "ensemble_mpnet"),
}
# Part B: row -> (label, kind, settings)
STUDENT_ROWS: dict[str, tuple[str, str, dict]] = {
    "s_untrained": ("untrained student (all-MiniLM-L6-v2)", "untrained", {}),
    "s_contrastive": ("kd contrastive-only (InfoNCE, in-batch + mined negatives)", "kd",
                      {"kl_weight": 0.0, "contrastive_weight": 1.0, "penalty_weight": 0.0}),
    "s_kl": ("kd KL-only", "kd", {"kl_weight": 1.0, "contrastive_weight": 0.0, "penalty_weight": 0.0}),
    "s_three": ("kd three-term (1·KL + 1·InfoNCE + 0.1·hinge)", "kd",
                {"kl_weight": 1.0, "contrastive_weight": 1.0, "penalty_weight": 0.1}),
    "s_margin": ("kd Margin-MSE + InfoNCE", "kd",
                 {"kl_weight": 0.0, "contrastive_weight": 1.0, "penalty_weight": 0.0, "margin_mse_weight": 1.0}),
    "s_st_mnrl": ("ST MultipleNegativesRankingLoss (same negatives, no teacher)", "st", {"loss": "mnrl"}),
    "s_st_marginmse": ("ST MarginMSELoss (same calibrated teacher scores)", "st", {"loss": "marginmse"}),
    "s_st_kldiv": ("ST DistillKLDivLoss (same teacher scores and temperature)", "st", {"loss": "kldiv"}),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmark_teachers"))
    parser.add_argument("--teacher", default="ensemble_mpnet", help="conf/teacher option the students learn from")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--rows", default=",".join([*TEACHER_ROWS, *STUDENT_ROWS]))
    parser.add_argument("--data", default="scifact")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"],
                        help="student training and evaluation encoding (every row the same); teachers run in fp32")
    parser.add_argument("--smoke", action="store_true", help="tiny BEIR data and a tiny random model (seconds)")
    parser.add_argument("--override", action="append", default=[], help="extra kd-train override (repeatable)")
    return parser.parse_args(argv)


def compose_cfg(args: argparse.Namespace, teacher: str, extra: list[str] = ()):
    overrides = [f"data={args.data}", f"teacher={teacher}", f"student.max_length={args.max_length}",
                 "data.mining=teacher", "logger=none", "trainer=cpu", f"trainer.max_epochs={args.epochs}",
                 f"data.batch_size={args.batch_size}", f"optim.lr={args.lr}", "eval_before=false",
                 "save_student=false", f"paths.output_dir={args.out}", f"precision={args.precision}",
                 "precision.teacher=fp32", *args.override, *extra,
                 *(getattr(args, "ensemble_override", []) if teacher.startswith("ensemble") else [])]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def corpus_teacher_metrics(teacher, splits) -> dict[str, float]:
    """A corpus teacher's own full-corpus ranking of the eval queries -> metrics."""
    from kd.retrieval.data.mining import teacher_rankings
    from kd.retrieval.metrics.retrieval import retrieval_metrics

    run = teacher_rankings(teacher, splits.corpus, splits.eval_queries, 100)
    return retrieval_metrics(run, splits.eval_qrels)


def teacher_row(args, option: str) -> dict:
    """Build the teacher as kd-train would (dev split carved, fusion chosen on dev) and rank the test claims."""
    from kd.retrieval.dev_split import carve_dev_split
    from kd.retrieval.run import load_splits
    from kd.retrieval.teachers import build_teacher

    extra = []
    if option in ("minilm", "mpnet", "tiny"):
        model = getattr(args, "smoke_model", None) if option == "tiny" else f"packaged:{option}"
        extra = [f"teacher.name_or_path={model}"]
        option = "bi_encoder"
    cfg = compose_cfg(args, option, extra)
    splits, dev = carve_dev_split(load_splits(cfg), cfg.data.dev_fraction, seed=cfg.seed)
    start = time.perf_counter()
    built = build_teacher(cfg.teacher, splits, dev, cfg.paths.cache_dir, seed=cfg.seed)
    metrics = corpus_teacher_metrics(built.teacher, splits)
    return {"metrics": metrics, "eval_s": round(time.perf_counter() - start, 1), "teacher": built.description,
            "fusion": built.info.get("fusion")}


def student_rows(args, wanted: list[str], out: Path) -> None:
    """Part B: one prepare (teacher, dev audit, calibration, mining), then each student row on the same groups."""
    import benchmark_quality as bq

    from kd.packaged_models import resolve_model
    from kd.retrieval.run import prepare
    from kd.retrieval.teacher_cache import score_with_cache

    todo = [r for r in wanted if r in STUDENT_ROWS and not (out / "rows" / f"{r}.json").is_file()]
    if not todo:
        return
    cfg = compose_cfg(args, args.teacher)
    prepared = prepare(cfg)
    temperature = prepared.audit["calibration"]["teacher_temperature"] if prepared.audit else 0.05
    splits, teacher, cache = prepared.splits, prepared.teacher, prepared.score_cache
    prepared.datamodule.setup("fit")
    train_set = prepared.datamodule.train_set
    groups = [train_set[(i, 0)] for i in range(len(train_set))]
    scores = score_with_cache(cache, teacher, [g["query"] for g in groups for _ in g["docs"]],
                              [d for g in groups for d in g["docs"]], batch_size=cfg.teacher.score_batch_size)
    cache.save()
    context = {"teacher": prepared.built_teacher.description, "teacher_temperature": temperature,
               "audit": prepared.audit, "groups": len(groups), "candidates": len(groups[0]["docs"]),
               "agree": float((scores.view(len(groups), -1).argmax(1) == 0).float().mean())}
    atomic_write_json(out / "student_context.json", context)
    for row in todo:
        label, kind, settings = STUDENT_ROWS[row]
        log.info("row %s: %s", row, label)
        result: dict = {"row": row, "label": label, "kind": kind}
        folder = out / "students" / row
        if kind == "untrained":
            result["metrics"], eval_s = bq.evaluate_folder(resolve_model(cfg.student.name_or_path), splits,
                                                           args.max_length, bf16=args.precision == "bf16")
        else:
            if kind == "kd":
                result["train"] = bq.train_kd(cfg, prepared, {**settings, "teacher_temperature": temperature}, folder)
            else:
                # ST sees the teacher on the student's scale: calibrated logits (score / T) times the student's
                # temperature, so MarginMSE's cosine margins and DistillKLDiv's logits match kd's.
                calibrated = scores / temperature * cfg.loss.student_temperature
                result["train"] = bq.train_st(cfg, bq.st_dataset(groups, calibrated),
                                              {**settings, "teacher_temperature": cfg.loss.student_temperature},
                                              folder, out / "st_work" / row)
            result["metrics"], eval_s = bq.evaluate_folder(str(folder), splits, args.max_length,
                                                           bf16=args.precision == "bf16")
        result["eval_s"] = round(eval_s, 1)
        atomic_write_json(out / "rows" / f"{row}.json", result)
        log.info("row %s: %s", row, json.dumps(result["metrics"]))


def report(args, argv: list[str], out: Path, threads: int, seconds: float) -> str:
    rows = {**{k: v[0] for k, v in TEACHER_ROWS.items()}, **{k: v[0] for k, v in STUDENT_ROWS.items()}}
    done = {r: json.loads((out / "rows" / f"{r}.json").read_text()) for r in rows if (out / "rows" / f"{r}.json").is_file()}
    lines = ["| row | " + " | ".join(METRICS) + " | train s | eval s |", "|" + "---|" * (len(METRICS) + 3)]
    for r, result in done.items():
        train_s = result.get("train", {}).get("train_s", "–")
        cells = [f"{result['metrics'].get(m, math.nan):.4f}" for m in METRICS]
        lines.append(f"| {rows[r]} | " + " | ".join(cells) + f" | {train_s} | {result.get('eval_s', '–')} |")
    context_path = out / "student_context.json"
    context = json.loads(context_path.read_text()) if context_path.is_file() else {}
    fusions = {r: done[r].get("fusion") for r in done if done[r].get("fusion")}
    command = f"OMP_NUM_THREADS={threads} python scripts/benchmark_teachers.py " + " ".join(argv)
    text = (f"Command: `{command}`\n\n" + "\n".join(lines) + "\n\n"
            f"Fusions chosen on dev: {json.dumps(fusions)}\n\nStudents' teacher: {context.get('teacher')}, "
            f"calibrated teacher temperature {context.get('teacher_temperature')}, {context.get('groups')} training "
            f"groups of {context.get('candidates')} documents (teacher ranks the labelled positive first in "
            f"{context.get('agree', math.nan):.1%}); audit on dev: {json.dumps((context.get('audit') or {}).get('teacher'))}"
            f" teacher vs {json.dumps((context.get('audit') or {}).get('student'))} student; this invocation "
            f"{seconds:.0f} s, {threads} threads.\n")
    return text


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.smoke:
        args = smoke_args(args)
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    wanted = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(wanted) - set(TEACHER_ROWS) - set(STUDENT_ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; known: {[*TEACHER_ROWS, *STUDENT_ROWS]}")
    start = time.perf_counter()
    for row in [r for r in wanted if r in TEACHER_ROWS]:
        path = out / "rows" / f"{row}.json"
        if path.is_file():
            continue
        label, option = TEACHER_ROWS[row]
        log.info("row %s: %s", row, label)
        atomic_write_json(path, {"row": row, "label": label, **teacher_row(args, option)})
    student_rows(args, wanted, out)
    text = report(args, argv, out, threads, time.perf_counter() - start)
    print(text)
    atomic_write_text(out / "benchmark_teachers.md", text)


def smoke_args(args: argparse.Namespace) -> argparse.Namespace:
    """Tiny BEIR folder + tiny random BERT (the test fixtures' makers): every code path, seconds."""
    sys.path.insert(0, str(REPO / "tests"))
    import conftest

    from kd.retrieval.data.beir import write_beir

    work = Path(tempfile.mkdtemp(prefix="kd-bench-teachers-")) if args.out.endswith("benchmark_teachers") else Path(args.out)
    model = conftest.make_tiny_bert(work / "model")
    queries = {q: text for q, text, _, _ in conftest.TOPICS}
    train = {q: {d: 1} for q, _, d, _ in conftest.TOPICS[:8]}
    test = {q: {d: 1} for q, _, d, _ in conftest.TOPICS[8:]}
    write_beir(work / "beir", conftest._tiny_corpus(), queries, {"train": train, "test": test})
    args.out = str(work / "out")
    args.data = "beir"
    args.max_length = 32
    args.batch_size = 2
    args.teacher = "ensemble"
    args.precision = "fp32"
    args.rows = "t_bm25,t_minilm,t_fusion2,s_untrained,s_contrastive,s_three,s_margin,s_st_mnrl"
    args.override = [f"data.path={work / 'beir'}", f"student.name_or_path={model}", "data.dev_fraction=0.3",
                     "teacher.audit_depth=5", "data.num_negatives=2", "data.mined_negatives=1",
                     f"paths.cache_dir={work / 'cache'}"]
    args.ensemble_override = [f"teacher.members.minilm.name_or_path={model}"]
    TEACHER_ROWS["t_minilm"] = ("tiny model, frozen", "tiny")
    args.smoke_model = str(model)
    return args


if __name__ == "__main__":
    main(sys.argv[1:])
