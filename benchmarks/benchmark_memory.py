"""Peak memory of one student training step vs. batch size: plain, GradCache (``loss.grad_cache_chunk``) and
gradient checkpointing (``student.gradient_checkpointing``).

What is measured: the growth of the process's peak resident memory (RSS, MiB) over one training step of the
student: embed B queries and B·C documents, the three-term ``DistillationLoss`` against random teacher scores,
backward into the student's parameters (the first backward also allocates the parameters' gradients, ~87 MiB for
MiniLM; no optimizer step). The kernel's own high-water mark is used: ``/proc/self/clear_refs`` is written ``5``
just before the step, ``VmHWM`` read after it, minus ``VmRSS`` before: no sampling, nothing missed. Every cell runs
in a fresh Python process, so one configuration's freed-but-kept allocator memory never hides another's.
The memory is dominated by the activations autograd keeps for backward (at 256 tokens, MiniLM's attention
probabilities alone are B·C·12·256² floats per layer).

The texts are random token ids: queries ``--query-length`` tokens, documents the full ``--max-length`` (98 % of
SciFact abstracts are longer than 128 tokens and 72 % longer than 256, so a real batch is as wide). Dropout on.

    OMP_NUM_THREADS=2 python benchmarks/benchmark_memory.py --batch-sizes 4,8,16,32,64 --chunk 16

Plain steps larger than ``--max-plain-texts`` texts are not run (they would need tens of GB): "-" in the table.
``--smoke`` runs a tiny configuration (``--student`` a tiny model) in this one process, in seconds, for the test suite
(tests/benchmarks/test_benchmarks_smoke.py); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("plain", "grad_cache", "checkpointing")


def rss_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def one_step(student_path: str, mode: str, batch: int, candidates: int, max_length: int, query_length: int,
             chunk: int) -> dict:
    """Run one training step in this process; {"peak_mib": growth of peak RSS, "seconds": step time}."""
    import torch

    sys.path.insert(0, str(REPO))
    from kd.retrieval.grad_cache import GradCache
    from kd.retrieval.losses import DistillationLoss
    from kd.retrieval.models.bi_encoder import BiEncoder

    torch.manual_seed(0)
    student = BiEncoder(student_path, max_length=max_length, gradient_checkpointing=mode == "checkpointing")
    student.train()
    vocab = student.tokenizer.vocab_size
    generator = torch.Generator().manual_seed(0)

    def tokens(rows: int, length: int) -> dict:
        ids = torch.randint(1000, vocab, (rows, length), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}

    queries, docs = tokens(batch, min(query_length, max_length)), tokens(batch * candidates, max_length)
    teacher = torch.rand(batch, candidates, generator=generator)
    loss = DistillationLoss(kl_weight=1.0, contrastive_weight=1.0, penalty_weight=0.1)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the kernel's peak-RSS mark (VmHWM) to the current RSS
    before = rss_kib("VmRSS")
    start = time.perf_counter()
    if mode == "grad_cache":
        cache = GradCache(student, chunk)
        q, d = cache.encode(queries), cache.encode(docs).view(batch, candidates, -1)
        cache.attach(loss(q, d, teacher).total).backward()
    else:
        q, d = student.embed(queries), student.embed(docs).view(batch, candidates, -1)
        loss(q, d, teacher).total.backward()
    seconds = time.perf_counter() - start
    return {"peak_mib": (rss_kib("VmHWM") - before) / 1024, "seconds": seconds}


def measure(args, mode: str, batch: int) -> dict | None:
    """``one_step`` in a fresh Python process (its JSON on the last line of stdout)."""
    if mode == "plain" and batch * (1 + args.candidates) > args.max_plain_texts:
        return None
    if args.smoke:  # in this process: seconds instead of a Python start-up per cell (smoke numbers mean nothing)
        return one_step(args.student, mode, batch, args.candidates, args.max_length, args.query_length, args.chunk)
    spec = json.dumps([args.student, mode, batch, args.candidates, args.max_length, args.query_length, args.chunk])
    done = subprocess.run([sys.executable, __file__, "--one", spec], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    if done.returncode != 0:
        raise RuntimeError(f"{mode} at batch {batch} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="packaged:minilm")
    parser.add_argument("--batch-sizes", default="4,8,16,32,64", help="queries per batch, comma-separated")
    parser.add_argument("--candidates", type=int, default=4, help="documents per query (positive + negatives)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--query-length", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=16, help="GradCache chunk (texts per forward)")
    parser.add_argument("--max-plain-texts", type=int, default=80, help="skip plain steps with more texts")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_step(*json.loads(args.one))))
        return
    if args.smoke:
        args.batch_sizes, args.candidates, args.max_length, args.query_length, args.chunk = "2", 2, 16, 8, 2
        args.max_plain_texts = 12
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    print(f"one training step (forward + three-term loss + backward), {args.candidates} documents per query, "
          f"documents {args.max_length} tokens, queries {args.query_length}, GradCache chunk {args.chunk}; "
          f"growth of peak RSS (MiB) and step seconds, each cell a fresh process\n")
    print("| batch (queries) | texts | plain MiB | GradCache MiB | checkpointing MiB | plain s | GradCache s "
          "| checkpointing s |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in sizes:
        cells = {mode: measure(args, mode, batch) for mode in MODES}
        mib = [f"{cells[m]['peak_mib']:.0f}" if cells[m] else "-" for m in MODES]
        sec = [f"{cells[m]['seconds']:.2f}" if cells[m] else "-" for m in MODES]
        print(f"| {batch} | {batch * (1 + args.candidates)} | " + " | ".join(mib + sec) + " |", flush=True)


if __name__ == "__main__":
    main()
