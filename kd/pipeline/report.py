"""The final report: report.json, report.md, PNG plots, and the summary table the CLI prints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from kd.io import atomic_open, atomic_write_json, atomic_write_text
from kd.pipeline.config import semantic_config

log = logging.getLogger(__name__)

STEP_KIND = {"questions": "teacher", "references": "teacher", "heldout_questions": "teacher",
             "heldout_references": "teacher", "baseline_answers": "answer", "finetuned_answers": "answer",
             "heldout_answers": "answer", "finetune": "training", "trainset": "training",
             "baseline_scores": "evaluation", "finetuned_scores": "evaluation", "heldout_scores": "evaluation"}
# keys that change from run to run (timings, memory) and are left out when two reports are compared
VOLATILE_KEYS = ("timings", "time_by_kind", "memory", "run_dir")


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.1f}%" if pct else f"{x:.3f}"


def learning_curve(heldout: Mapping | None, cycles: Sequence[Mapping]) -> list[dict]:
    """Held-out scores per cycle (0 = the base student): means, 95 % intervals, paired gain since cycle 0."""
    if not heldout:
        return []
    rows = [{"cycle": 0, **{k: heldout["baseline"][k] for k in ("relevancy", "correctness")}}]
    for c in cycles:
        h = c.get("heldout")
        if h:
            rows.append({"cycle": c["cycle"], **{k: h[k] for k in ("relevancy", "correctness", "relevancy_gain",
                                                                     "relevancy_gain_ci95", "correctness_gain",
                                                                     "correctness_gain_ci95")}})
    return rows


def build_report(run, cfg: Mapping, kb, summaries: Sequence[dict], mem_log: Sequence[dict],
                 heldout: Mapping | None = None) -> dict:
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
        "heldout": dict(heldout) if heldout else None,
        "learning_curve": learning_curve(heldout, cycles),
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


def fmt_ci(block: Mapping | None) -> str:
    if not block or block.get("mean") is None:
        return "n/a"
    ci = block.get("ci95")
    return f"{block['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{block['mean']:.3f}"


def fmt_gain(mean, ci) -> str:
    if mean is None:
        return "-"
    return f"{mean:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else f"{mean:+.3f}"


def heldout_table(report: Mapping) -> str:
    """The learning curve on the held-out questions: mean [95 % CI] per cycle and the paired gain since cycle 0."""
    curve = report.get("learning_curve") or []
    if not curve:
        return "(no held-out set: eval.heldout_per_topic=0)"
    lines = ["| cycle | n | correctness [95% CI] | gain vs base [95% CI] | relevancy [95% CI] | gain vs base [95% CI] |",
             "|---|---|---|---|---|---|"]
    for r in curve:
        lines.append(f"| {r['cycle']}{' (base)' if r['cycle'] == 0 else ''} | {r['correctness']['n']} | "
                     f"{fmt_ci(r['correctness'])} | {fmt_gain(r.get('correctness_gain'), r.get('correctness_gain_ci95'))} | "
                     f"{fmt_ci(r['relevancy'])} | {fmt_gain(r.get('relevancy_gain'), r.get('relevancy_gain_ci95'))} |")
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

    curve = report.get("learning_curve") or []
    if curve:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs_h = [r["cycle"] for r in curve]
        for metric, marker in (("correctness", "o"), ("relevancy", "s")):
            means = [r[metric]["mean"] or 0.0 for r in curve]
            lo = [m - (r[metric]["ci95"] or [m, m])[0] for m, r in zip(means, curve)]
            hi = [(r[metric]["ci95"] or [m, m])[1] - m for m, r in zip(means, curve)]
            ax.errorbar(xs_h, means, yerr=[lo, hi], marker=marker, capsize=4, label=f"held-out {metric}")
        ax.set(xlabel="cycle (0 = base student)", ylabel="score (95% bootstrap CI)", xticks=xs_h, ylim=(0, 1.05),
               title=f"Held-out questions (n={curve[0]['correctness']['n']}): learning curve")
        ax.legend(fontsize=8)
        save(fig, "heldout.png")

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
        "## Held-out questions: what the student learned", "",
        "Questions written by the teacher before cycle 1 from reserved passages, never trained on; scored at "
        "baseline (cycle 0) and after every fine-tune. Correctness = RAGAS answer correctness against the "
        "teacher's reference (statement F1 and embedding similarity, weights "
        f"{report['config'].get('correctness', {}).get('weights', [0.75, 0.25])}); unparseable judge replies "
        "count as 0 and are listed. Intervals: bootstrap 95 % (gains: paired over the same questions).", "",
        heldout_table(report), "",
        *_failures(report),
        "## Training questions (re-scored right after training on them: a memorisation check)", "",
        summary_table(report), "",
        "## Time per step (seconds)", "", timing_table(report), "",
    ]
    if plots:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    parts += ["## Memory per stage", "", "| stage | RSS MB | CUDA allocated MB |", "|---|---|---|"]
    parts += [f"| {m['stage']} | {m['rss_mb']} | {m.get('cuda_allocated_mb', '-')} |" for m in report["memory"]]
    h = report.get("heldout")
    if h and h.get("samples"):
        parts += ["", "## Sample held-out questions (answers per cycle, 0 = base student)", ""]
        for smp in h["samples"]:
            parts += [f"**{smp['id']} ({smp['topic']})**: {smp['question']}", "", f"- reference: {smp['reference']}"]
            parts += [f"- cycle {c} (correctness {_fmt(v['correctness'])}, relevancy {_fmt(v['relevancy'])}): "
                      f"{v['answer']}" for c, v in smp["by_cycle"].items()]
            parts += [""]
    parts += ["", "## Sample Q&A per cycle (training questions)", ""]
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


def _failures(report: Mapping) -> list[str]:
    h = report.get("heldout")
    if not h:
        return []
    rows = [("0", f) for f in h["baseline"]["failures"]] + [
        (str(c["cycle"]), f) for c in report["cycles"] for f in (c.get("heldout") or {}).get("failures", [])]
    if not rows:
        return ["Unparseable judge replies on the held-out set: none.", ""]
    out = [f"Unparseable judge replies on the held-out set ({len(rows)}, counted as 0):", ""]
    out += [f"- cycle {c}, {f['id']}, {f['metric']}: {f['problem'] or f['status']}" for c, f in rows]
    return out + [""]


def write_report(run, cfg: Mapping, kb, summaries: Sequence[dict], mem_log: Sequence[dict],
                 heldout: Mapping | None = None) -> dict:
    report = build_report(run, cfg, kb, summaries, mem_log, heldout)
    plots = _plots(report, run.path / "plots")
    report["plots"] = plots
    atomic_write_json(run.path / "report.json", report)
    atomic_write_text(run.path / "report.md", render_markdown(report, plots))
    return report
