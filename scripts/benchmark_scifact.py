"""SciFact (BEIR split) quality table: untrained student, distilled student, teacher reranking its top-100.

Trains on the 809 train claims, evaluates on the 300 test claims against the full 5183-abstract corpus with
an exact FAISS inner-product index. Prints a Markdown table and writes it (with the command) to
``outputs/benchmark_scifact_<time>/benchmark_scifact.md``; copy the table into benchmarks/RESULTS.md.

    python scripts/benchmark_scifact.py [hydra overrides for kd-train...]

e.g. ``python scripts/benchmark_scifact.py trainer.max_epochs=1 logger=csv``.

``--smoke`` (before or among the overrides) runs the whole table on a handful of SciFact claims and abstracts (one
short epoch, packaged MiniLM as student and, with a fresh scoring head, as teacher; output and caches in a
temporary folder) in seconds, so the script is checked by the test suite (tests/benchmarks/
test_benchmarks_smoke.py); its numbers mean nothing. Later overrides win over the smoke ones.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

import kd.config  # noqa: F401
from kd.io import atomic_write_text
from kd.retrieval.metrics.evaluate import rerank
from kd.retrieval.metrics.retrieval import retrieval_metrics
from kd.retrieval.run import format_table, load_splits, run_training

REPO = Path(__file__).resolve().parents[1]
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
# --smoke: a handful of SciFact claims and abstracts, one short epoch, and a cheap explicit teacher (the packaged
# MiniLM with a fresh scoring head: no teacher training, no dependence on kd-train's default teacher).
SMOKE_OVERRIDES = ["data.max_train_queries=10", "data.max_eval_queries=4", "data.corpus_size=40", "data.batch_size=2",
                   "teacher=trained_minilm", "teacher.name_or_path=packaged:minilm", "teacher.max_length=64",
                   "student.max_length=32", "trainer=cpu", "trainer.max_epochs=1", "logger=none", "checkpoint=none",
                   "save_student=false", "++trainer.enable_progress_bar=false"]


def smoke_overrides(given: list[str]) -> list[str]:
    """SMOKE_OVERRIDES, less the smoke teacher when ``given`` picks a teacher (``teacher=...``) of its own."""
    if any(o.lstrip("+~").startswith("teacher=") for o in given):
        return [o for o in SMOKE_OVERRIDES if not o.startswith("teacher")]
    return list(SMOKE_OVERRIDES)


def main(argv: list[str]) -> None:
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    out = REPO / "outputs" / f"benchmark_scifact_{stamp}"
    overrides = [a for a in argv if a != "--smoke"]
    if len(overrides) < len(argv):
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="kd-scifact-smoke-"))
        overrides = [*smoke_overrides(overrides), f"paths.cache_dir={out / 'cache'}", *overrides]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=scifact", f"paths.output_dir={out}", *overrides])
    start = time.perf_counter()
    results = run_training(cfg)
    rows = {"(a) untrained student (all-MiniLM-L6-v2)": results["before"],
            "(b) distilled student": results["after"]}

    from kd.retrieval.dev_split import carve_dev_split
    from kd.retrieval.teachers import build_teacher

    splits, dev = carve_dev_split(load_splits(cfg), float(cfg.data.get("dev_fraction", 0.0)), seed=cfg.seed)
    run = json.loads((out / "eval_run.json").read_text())
    # the teacher the run distilled (any kind; a trained cross-encoder or a fusion's choices come from the cache)
    teacher = build_teacher(cfg.teacher, splits, dev, cfg.paths.cache_dir, seed=cfg.seed,
                            precision=cfg.precision.teacher, accelerator=cfg.trainer.accelerator).teacher
    rerank_start = time.perf_counter()
    reranked = rerank(teacher, splits.corpus, splits.eval_queries, run, depth=100,
                      batch_size=cfg.teacher.score_batch_size)
    rerank_s = time.perf_counter() - rerank_start
    rows["(c) teacher reranking (b)'s top-100"] = retrieval_metrics(reranked, splits.eval_qrels)
    total_s = time.perf_counter() - start

    table = format_table(rows, METRICS)
    command = "python scripts/benchmark_scifact.py " + " ".join(argv)
    report = (
        f"## SciFact (BEIR split): {len(splits.eval_queries)} test claims, {len(splits.corpus)} documents\n\n"
        f"Command: `{command}`\n\n{table}\n\n"
        f"Train examples: {results['data']['train_examples']}; timings (s): "
        f"{json.dumps(results['timings'])}, teacher rerank {rerank_s:.0f}, total {total_s:.0f}.\n"
        f"Teacher: {results['teacher']}\n"
    )
    print(report)
    atomic_write_text(out / "benchmark_scifact.md", report)


if __name__ == "__main__":
    main(sys.argv[1:])
