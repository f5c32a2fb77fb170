"""The final report: report.json, report.md, PNG plots, and the summary table the CLI prints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from kd.io import atomic_open, atomic_write_json, atomic_write_text
from kd.pipeline.config import semantic_config

log = logging.getLogger(__name__)

STEP_KIND = {"questions": "teacher", "references": "teacher", "baseline_answers": "answer",
             "finetuned_answers": "answer", "finetune": "training", "trainset": "training",
             "baseline_scores": "evaluation", "finetuned_scores": "evaluation"}
# keys that change from run to run (timings, memory) and are left out when two reports are compared
VOLATILE_KEYS = ("timings", "time_by_kind", "memory", "run_dir")


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.1f}%" if pct else f"{x:.3f}"


def build_report(run, cfg: Mapping, kb, summaries: Sequence[dict], mem_log: Sequence[dict]) -> dict:
    records = run.records()
    timings = {r["key"]: r["seconds"] for r in records}
    by_kind: dict[str, float] = {}
    for r in records:
        kind = STEP_KIND.get(r["step"], "other")
        by_kind[kind] = round(by_kind.get(kind, 0.0) + r["seconds"], 3)
    memory = [m for r in records for m in r.get("memory", [])] + list(mem_log)
    threshold = float(cfg["relevancy"]["threshold"])
    cycles = [dict(s) for s in summaries]
    first, last = (cycles[0], cycles[-1]) if cycles else ({}, {})
    overall = {
        "first_baseline_mean": first.get("baseline", {}).get("mean_unparseable_as_zero"),
        "last_finetuned_mean": last.get("finetuned", {}).get("mean_unparseable_as_zero"),
        "n_unparseable_total": sum(c["baseline"]["n_unparseable"] + c["finetuned"]["n_unparseable"] for c in cycles),
        "cycles_improved": sum(1 for c in cycles if (c["improvement_abs"] or 0) > 0),
    }
    by_topic: dict[str, int] = {}
    for p in kb.passages:
        by_topic[p.topic] = by_topic.get(p.topic, 0) + 1
    return {
        "config_hash": run.hash,
        "config": semantic_config(cfg),
        "teacher": cfg["teacher"].get("model"),
        "student": cfg["student"].get("model"),
        "knowledge_base": {"source": kb.source, "n_passages": len(kb.passages), "passages_per_topic": by_topic},
        "metric": {"name": "answer_relevancy (RAGAS definition)", "k": cfg["relevancy"]["k"],
                   "embedding_model": cfg["relevancy"]["embedding_model"], "success_threshold": threshold,
                   "mean": "mean over all answers, unparseable judge replies counted as 0 (also: 'mean' over scored only)"},
        "cycles": cycles,
        "overall": overall,
        "timings": timings,
        "time_by_kind": by_kind,
        "memory": memory,
        "run_dir": str(run.path),
    }


def comparable(report: Mapping) -> dict:
    """The report without timings, memory and paths (what must match between a resumed and a fresh run)."""
    return {k: v for k, v in report.items() if k not in VOLATILE_KEYS}


def summary_table(report: Mapping) -> str:
    thr = report["metric"]["success_threshold"]
    head = (f"| cycle | train pairs | baseline relevancy | fine-tuned relevancy | improvement | improvement % | "
            f"success (>= {thr:g}) base -> ft | unparseable | similarity to reference base -> ft | first -> last loss |")
    lines = [head, "|" + "---|" * 10]
    for c in report["cycles"]:
        b, f = c["baseline"], c["finetuned"]
        losses = c["train_losses"] or [None]
        lines.append(f"| {c['cycle']} | {c['train_examples']} | {_fmt(b['mean_unparseable_as_zero'])} | "
                     f"{_fmt(f['mean_unparseable_as_zero'])} | {_fmt(c['improvement_abs'])} | "
                     f"{_fmt(c['improvement_pct'], pct=True)} | {_fmt(b['success_rate'])} -> {_fmt(f['success_rate'])} | "
                     f"{b['n_unparseable']} + {f['n_unparseable']} | {_fmt(b.get('reference_similarity_mean'))} -> "
                     f"{_fmt(f.get('reference_similarity_mean'))} | {_fmt(losses[0])} -> {_fmt(losses[-1])} |")
    return "\n".join(lines)


def timing_table(report: Mapping) -> str:
    lines = ["| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["timings"].items()]
    lines += [f"| **total {k}** | {v:.1f} |" for k, v in report["time_by_kind"].items()]
    return "\n".join(lines)


def _plots(report: Mapping, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: report without plots (pip install matplotlib)")
        return []
    out.mkdir(parents=True, exist_ok=True)
    files = []
    cycles = report["cycles"]

    def save(fig, name):
        with atomic_open(out / name, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        files.append(f"{out.name}/{name}")

    xs = [c["cycle"] for c in cycles]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], [c["baseline"]["mean_unparseable_as_zero"] or 0 for c in cycles], w, label="baseline")
    ax.bar([x + w / 2 for x in xs], [c["finetuned"]["mean_unparseable_as_zero"] or 0 for c in cycles], w, label="fine-tuned")
    ax.axhline(report["metric"]["success_threshold"], ls="--", c="gray", lw=1, label="success threshold")
    ax.set(xlabel="cycle", ylabel="answer relevancy", xticks=xs, ylim=(0, 1.2), title="Answer relevancy per cycle")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    save(fig, "relevancy.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for c in cycles:
        ax.plot(range(1, len(c["train_losses"]) + 1), c["train_losses"], marker="o", ms=3, label=f"cycle {c['cycle']}")
    ax.set(xlabel="optimizer step", ylabel="loss (answer tokens)", title="LoRA training loss")
    ax.legend(fontsize=8)
    save(fig, "loss.png")

    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.22 * len(report["timings"]))))
    keys = list(report["timings"])
    ax.barh(keys, [report["timings"][k] for k in keys])
    ax.invert_yaxis()
    ax.set(xlabel="seconds", title="Wall time per step")
    ax.tick_params(axis="y", labelsize=7)
    save(fig, "step_times.png")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    mem = report["memory"]
    ax.plot(range(len(mem)), [m["rss_mb"] for m in mem], marker=".", label="process RSS (MB)")
    if any("cuda_allocated_mb" in m for m in mem):
        ax.plot(range(len(mem)), [m.get("cuda_allocated_mb", 0) for m in mem], marker=".", label="CUDA allocated (MB)")
    ax.set(xlabel="stage (in order)", ylabel="MB", title="Memory per stage")
    ax.legend(fontsize=8)
    save(fig, "memory.png")
    return files


def render_markdown(report: Mapping, plots: Sequence[str]) -> str:
    kb = report["knowledge_base"]
    parts = [
        "# kd-pipeline report", "",
        f"- teacher: `{report['teacher']}`; student: `{report['student']}`",
        f"- knowledge base: `{kb['source']}` ({kb['n_passages']} passages: {kb['passages_per_topic']})",
        f"- metric: {report['metric']['name']}, k={report['metric']['k']}, embeddings "
        f"`{report['metric']['embedding_model']}`; success = relevancy >= {report['metric']['success_threshold']:g}; "
        "unparseable judge replies count as 0 in the mean and are listed; similarity to reference = MiniLM cosine "
        "of answer and teacher reference (not part of RAGAS, a correctness proxy)",
        f"- config hash `{report['config_hash']}`", "",
        "## Summary", "", summary_table(report), "",
        "## Time per step (seconds)", "", timing_table(report), "",
    ]
    if plots:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    parts += ["## Memory per stage", "", "| stage | RSS MB | CUDA allocated MB |", "|---|---|---|"]
    parts += [f"| {m['stage']} | {m['rss_mb']} | {m.get('cuda_allocated_mb', '-')} |" for m in report["memory"]]
    parts += ["", "## Sample Q&A per cycle", ""]
    for c in report["cycles"]:
        parts += [f"### Cycle {c['cycle']} (fine-tune: {c['finetune_mode']['quantization']}, "
                  f"{c['finetune_mode']['precision']}, {c['trainable_params']} LoRA params, "
                  f"losses {', '.join(f'{x:.3f}' for x in c['train_losses'])})", ""]
        for s in c["samples"]:
            parts += [f"**{s['id']} ({s['topic']})**: {s['question']}", "",
                      f"- reference: {s['reference']}",
                      f"- baseline ({_fmt(s['baseline_score'])}, {s['baseline_status']}): {s['baseline_answer']}",
                      f"- fine-tuned ({_fmt(s['finetuned_score'])}, {s['finetuned_status']}): {s['finetuned_answer']}",
                      f"- similarity to reference: baseline {_fmt(s.get('baseline_reference_similarity'))}, "
                      f"fine-tuned {_fmt(s.get('finetuned_reference_similarity'))}", ""]
    return "\n".join(parts) + "\n"


def write_report(run, cfg: Mapping, kb, summaries: Sequence[dict], mem_log: Sequence[dict]) -> dict:
    report = build_report(run, cfg, kb, summaries, mem_log)
    plots = _plots(report, run.path / "plots")
    report["plots"] = plots
    atomic_write_json(run.path / "report.json", report)
    atomic_write_text(run.path / "report.md", render_markdown(report, plots))
    return report
