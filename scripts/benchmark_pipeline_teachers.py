"""Pipeline teachers side by side: time per question and per reference, and the questions themselves (to judge by
hand), for several teacher LLMs on the same knowledge-base passages.

    python scripts/benchmark_pipeline_teachers.py --n 10 \\
        --teachers packaged:qwen2.5-coder-0.5b packaged:qwen2.5-coder-1.5b
    python scripts/benchmark_pipeline_teachers.py --smoke      # SmolLM2 as the teacher, 2 passages, seconds

Passages are drawn as the held-out set draws them (``kd.pipeline.heldout.heldout_candidates``, round-robin over
the topics). Each teacher is loaded, asked for one question per passage (batched greedy decoding, as
``kd-pipeline`` does) and then for a reference answer to its own question, and freed before the next one.
Prints a timing table and a table of the questions per passage.
"""

from __future__ import annotations

import argparse
import time

from kd.pipeline import memory, prompts
from kd.pipeline.chat import chat_many
from kd.pipeline.heldout import heldout_candidates
from kd.pipeline.knowledge import load_knowledge_base


def pick_passages(source: str, topics: list[str], n: int, seed: int) -> list:
    kb = load_knowledge_base(source, topics, 800, 120, None)
    queues = list(heldout_candidates(kb, topics, seed).values())
    out = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", nargs="+", default=["packaged:qwen2.5-coder-0.5b", "packaged:qwen2.5-coder-1.5b"])
    parser.add_argument("--n", type=int, default=10, help="passages (one question each)")
    parser.add_argument("--kb", default="auto", help="kb.source: auto | kubernetes-validate | folder")
    parser.add_argument("--topics", nargs="+", default=["pods", "services", "storage"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="SmolLM2 as the teacher, 2 passages, 8 tokens")
    args = parser.parse_args(argv)
    q_tokens, r_tokens = 48, 96
    if args.smoke:
        args.teachers, args.n, args.kb, q_tokens, r_tokens = ["packaged:smollm2"], 2, "kubernetes-validate", 8, 8
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from kd.pipeline.llm import LocalChatLM

    passages = pick_passages(args.kb, args.topics, args.n, args.seed)
    rows, questions = [], {}
    for name in args.teachers:
        t0 = time.perf_counter()
        lm = LocalChatLM(name, dtype="auto", batch_size=args.batch_size)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw = chat_many(lm, [prompts.question_messages(p.text, p.topic) for p in passages], q_tokens)
        q_s = time.perf_counter() - t0
        qs = [prompts.parse_question(r) for r in raw]
        t0 = time.perf_counter()
        chat_many(lm, [prompts.reference_messages(q or "", p.text) for q, p in zip(qs, passages)], r_tokens)
        r_s = time.perf_counter() - t0
        rows.append((name, load_s, q_s / len(passages), r_s / len(passages), sum(q is not None for q in qs),
                     memory.snapshot("loaded")["rss_mb"]))
        questions[name] = qs
        lm.close()
        del lm
        memory.free_memory()
    print(f"\n## Teachers on {len(passages)} passages ({args.kb}), batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads\n")
    print("| teacher | load s | s / question | s / reference | questions parsed | RSS MB |")
    print("|---|---|---|---|---|---|")
    for name, load_s, q_s, r_s, ok, rss in rows:
        print(f"| {name} | {load_s:.1f} | {q_s:.2f} | {r_s:.2f} | {ok}/{len(passages)} | {rss:.0f} |")
    print("\n## Questions per passage\n")
    print("| passage | " + " | ".join(args.teachers) + " |")
    print("|---|" + "---|" * len(args.teachers))
    for i, p in enumerate(passages):
        text = " ".join(p.text.split())[:90].replace("|", "/")
        cells = [(questions[t][i] or "(none)").replace("|", "/") for t in args.teachers]
        print(f"| {p.topic}: {text}... | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
