"""Which precisions run on this machine, and what they cost: teacher scoring and student training.

Each configuration runs in its own subprocess (so peak memory is its own) on the packaged MiniLM models:
  - teacher: load the cross-encoder in fp32 / bf16 / fp16 / int8 / nf4 and score the same (claim, abstract)
    pairs; report pairs/s, peak RSS, and the largest score difference from fp32;
  - student: train the bi-encoder for a few steps under each Lightning precision; report s/step, peak RSS
    and the precision Lightning actually ran (``16-mixed`` on CPU is refused by kd; Lightning alone would
    silently run it as bf16-mixed).

    python scripts/benchmark_precision.py [--pairs 256] [--steps 6] [--teacher <folder or HF id>]

``--smoke`` scores 16 pairs in fp32 and bf16 and trains the student 2 steps in 32-true, in seconds, so the script is
checked by the test suite (tests/benchmarks/test_benchmarks_smoke.py); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def teacher_job(precision: str, teacher: str, pairs: int, accelerator: str) -> dict:
    import torch

    from kd.retrieval.models.cross_encoder import CrossEncoder
    from kd.precision import check_precision
    from kd.resources import PeakMemory

    check_precision(accelerator, "32-true", precision)
    queries, docs = _pairs(pairs)
    with PeakMemory() as memory:
        model = CrossEncoder.load(teacher, max_length=128, precision=precision, accelerator=accelerator)
        if accelerator == "gpu" and precision in ("fp32", "bf16", "fp16"):
            model.cuda()
        model.score(queries[:16], docs[:16], batch_size=16)  # warm-up
        start = time.perf_counter()
        scores = model.score(queries, docs, batch_size=32)
        seconds = time.perf_counter() - start
    return {"pairs_per_s": pairs / seconds, "peak_rss_mb": memory.peak_rss_mb, "peak_cuda_mb": memory.peak_cuda_mb,
            "scores": scores.tolist()}


def student_job(precision: str, steps: int, accelerator: str, student_model: str = "packaged:minilm") -> dict:
    import lightning as L
    import torch

    from kd.retrieval.losses import DistillationLoss
    from kd.retrieval.models.bi_encoder import BiEncoder
    from kd.precision import check_precision
    from kd.resources import PeakMemory

    check_precision(accelerator, precision, "fp32")
    queries, docs = _pairs(8 * 4 * steps)
    student = BiEncoder(student_model, max_length=128)

    class Steps(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.student = student
            self.loss = DistillationLoss()

        def training_step(self, index, _):
            i = int(index[0]) * 32
            q = self.student(**{k: v.to(self.device) for k, v in student.tokenize(queries[i:i + 32:4]).items()})
            d = self.student(**{k: v.to(self.device) for k, v in student.tokenize(docs[i:i + 32]).items()})
            teacher = torch.rand(8, 4, device=self.device)
            return self.loss(q, d.view(8, 4, -1), teacher).total

        def configure_optimizers(self):
            return torch.optim.AdamW(self.student.parameters(), lr=1e-5)

    loader = torch.utils.data.DataLoader(torch.arange(steps).view(-1, 1), batch_size=None)
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with PeakMemory() as memory:
        start = time.perf_counter()
        trainer.fit(Steps(), loader)
        seconds = time.perf_counter() - start
    return {"s_per_step": seconds / steps, "peak_rss_mb": memory.peak_rss_mb, "peak_cuda_mb": memory.peak_cuda_mb,
            "ran_as": str(trainer.precision), "pairs_per_s": steps * 32 / seconds}


def _pairs(n: int) -> tuple[list[str], list[str]]:
    from kd.retrieval.data.sources import load_retrieval_data
    from kd.paths import shared_path

    splits = load_retrieval_data("scifact", shared_path("data/scifact/scifact.zip"), max_eval_queries=10)
    qids = sorted(splits.train_qrels)
    doc_ids = sorted(splits.corpus)
    queries = [splits.train_queries[qids[i % len(qids)]] for i in range(n)]
    docs = [splits.corpus[doc_ids[(i * 7919) % len(doc_ids)]] for i in range(n)]
    return queries, docs


def _child(kind: str, precision: str, args) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--precision", precision, "--pairs", str(args.pairs),
               "--steps", str(args.steps), "--teacher", args.teacher, "--student", args.student,
               "--accelerator", args.accelerator]
    proc = subprocess.run(command, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": error[:160]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--teacher", default="packaged:minilm")
    parser.add_argument("--student", default="packaged:minilm", help="bi-encoder trained in the student rows")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--child", choices=["teacher", "student"])
    parser.add_argument("--precision")
    parser.add_argument("--teacher-precisions", default="fp32,bf16,fp16,int8,nf4")
    parser.add_argument("--student-precisions", default="32-true,bf16-mixed,bf16-true,16-true,16-mixed,64-true")
    parser.add_argument("--smoke", action="store_true", help="seconds-long check (numbers mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.pairs, args.steps = 16, 2
        args.teacher_precisions, args.student_precisions = "fp32,bf16", "32-true"
    if args.child:
        job = teacher_job(args.precision, args.teacher, args.pairs, args.accelerator) if args.child == "teacher" \
            else student_job(args.precision, args.steps, args.accelerator, args.student)
        print("RESULT " + json.dumps(job))
        return

    print(f"## Precision on {args.accelerator}: teacher scoring ({args.pairs} SciFact pairs, 128 tokens) "
          f"and student training ({args.steps} steps of 8 queries x 4 docs)\n")
    print(f"Command: `python scripts/benchmark_precision.py --pairs {args.pairs} --steps {args.steps} "
          f"--accelerator {args.accelerator}`\n")
    print("| teacher precision | runs | pairs/s | speed vs fp32 | peak RSS MiB | max |score - fp32 score| |")
    print("|---|---|---|---|---|---|")
    reference = None
    base_speed = None
    for precision in args.teacher_precisions.split(","):
        result = _child("teacher", precision, args)
        if "error" in result:
            print(f"| {precision} | no: {result['error']} | | | | |")
            continue
        if reference is None:
            reference, base_speed = result["scores"], result["pairs_per_s"]
        diff = max(abs(a - b) for a, b in zip(result["scores"], reference))
        print(f"| {precision} | yes | {result['pairs_per_s']:.1f} | {result['pairs_per_s'] / base_speed:.2f}x | "
              f"{result['peak_rss_mb']:.0f} | {diff:.4f} |")
    print("\n| student precision (Lightning) | runs | ran as | s/step | pairs/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for precision in args.student_precisions.split(","):
        result = _child("student", precision, args)
        if "error" in result:
            print(f"| {precision} | no: {result['error']} | | | | |")
            continue
        print(f"| {precision} | yes | {result['ran_as']} | {result['s_per_step']:.2f} | {result['pairs_per_s']:.1f} | "
              f"{result['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
