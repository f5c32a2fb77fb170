"""1 process vs. N DDP processes on this machine: training throughput and sharded corpus encoding, side by side.

Runs ``kd-train`` once per process count (one torch thread per process, ``OMP_NUM_THREADS=1``), each in its own
output folder, with validation only after training (so ``fit_s`` is training alone), and reads ``metrics.json``:
training steps/s, query groups/s and pairs/s (all processes together; under DDP one step trains
N x data.batch_size query groups), and the final evaluation's time (its corpus encoding is split over the
processes). Same data, teacher (scores cached), seed and epochs in every run.

    python scripts/benchmark_ddp.py --processes 1,2 -- data=scifact_mini

``--smoke`` runs both process counts on a handful of SciFact claims and abstracts (one short epoch, packaged
MiniLM as student and, with a fresh scoring head, as teacher; caches in a temporary folder) in seconds, so the
script is checked by the test suite (tests/benchmarks/test_benchmarks_smoke.py); its numbers mean nothing.
Overrides given after ``--`` win over the smoke ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# --smoke: a handful of SciFact claims and abstracts, one short epoch, and a cheap explicit teacher (the packaged
# MiniLM with a fresh scoring head: no teacher training, no dependence on kd-train's default teacher).
SMOKE_OVERRIDES = ["data=scifact", "data.max_train_queries=10", "data.max_eval_queries=4", "data.corpus_size=40",
                   "data.batch_size=1", "teacher=trained_minilm", "teacher.name_or_path=packaged:minilm",
                   "teacher.max_length=64", "student.max_length=32", "trainer.max_epochs=1", "checkpoint=none",
                   "++trainer.enable_progress_bar=false"]


def smoke_overrides(given: list[str]) -> list[str]:
    """SMOKE_OVERRIDES, less the smoke teacher when ``given`` picks a teacher (``teacher=...``) of its own."""
    if any(o.lstrip("+~").startswith("teacher=") for o in given):
        return [o for o in SMOKE_OVERRIDES if not o.startswith("teacher")]
    return list(SMOKE_OVERRIDES)


def run(processes: int, overrides: list[str], out_dir: Path) -> dict:
    trainer = ["trainer=cpu"] if processes == 1 else ["trainer=ddp", "trainer.accelerator=cpu",
                                                     f"trainer.devices={processes}"]
    command = [sys.executable, "-m", "kd.cli.train", *trainer, "logger=csv", "eval_before=false",
               "save_student=false", "+trainer.check_val_every_n_epoch=1000", f"hydra.run.dir={out_dir}", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    res, timings = metrics["resources"], metrics["timings"]
    return {"processes": processes, "steps": res["train_steps"], "fit_s": timings["fit_s"],
            "steps_per_s": res["train_steps"] / timings["fit_s"], "pairs_per_s": res["train_pairs_per_s"],
            "pairs": res["train_pairs"], "eval_after_s": timings["eval_after_s"],
            "ndcg@10": metrics["after"]["ndcg@10"], "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--candidates", type=int, default=4, help="1 positive + data.num_negatives per group")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long check on a handful of SciFact docs (numbers mean nothing)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kd-ddp-bench-") as tmp:
        if args.smoke:
            args.overrides = [*smoke_overrides(args.overrides), f"paths.cache_dir={tmp}/cache", *args.overrides]
        for n in [int(p) for p in args.processes.split(",")]:
            row = run(n, args.overrides, Path(tmp) / f"p{n}")
            row["groups_per_s"] = row["pairs_per_s"] / args.candidates
            rows.append(row)
            print(row, flush=True)
    base = rows[0]
    print("\n| processes | train steps | fit s | steps/s | groups/s | pairs/s | speed-up (pairs/s) | final eval s "
          "| nDCG@10 |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['steps']} | {r['fit_s']:.1f} | {r['steps_per_s']:.3f} | {r['groups_per_s']:.2f} "
              f"| {r['pairs_per_s']:.2f} | {r['pairs_per_s'] / base['pairs_per_s']:.2f}x | {r['eval_after_s']:.1f} "
              f"| {r['ndcg@10']:.4f} |")


if __name__ == "__main__":
    main()
