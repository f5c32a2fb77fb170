"""Collect a Hydra multirun folder into one table (CSV + Markdown) and plots (PNG).

A multirun folder holds one subfolder per job with ``.hydra/overrides.yaml`` (the job's overrides),
``status.json`` (ok / failed) and, for finished jobs, ``metrics.json`` (before/after metrics, loss terms,
timings, peak memory, throughput). A job folder without ``status.json`` is reported as ``unfinished``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import yaml

from kd.io import atomic_open, atomic_write_text

METRIC_COLUMNS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def _overrides(job_dir: Path) -> dict[str, str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) or []
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def collect(multirun_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job folder (sorted by job number): ``job``, ``status``, the overrides, metrics, resources."""
    root = Path(multirun_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such multirun folder")
    rows = []
    for job_dir in sorted((p for p in root.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()),
                          key=lambda p: int(p.name) if p.name.isdigit() else p.name):
        row: dict[str, Any] = {"job": job_dir.name}
        status_file = job_dir / "status.json"
        status = json.loads(status_file.read_text()) if status_file.is_file() else {"status": "unfinished"}
        row["status"] = status["status"]
        row.update(_overrides(job_dir))
        metrics_file = job_dir / "metrics.json"
        if status["status"] == "ok" and metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            for name in METRIC_COLUMNS:
                row[name] = metrics["after"].get(name)
                if "before" in metrics:
                    row[f"before_{name}"] = metrics["before"].get(name)
            row.update({f"loss_{k}": v for k, v in metrics.get("train", {}).items()})
            row.update(metrics.get("resources", {}))
            row["fit_s"] = metrics.get("timings", {}).get("fit_s")
        row["error"] = status.get("error", "")
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{root}: no job folders (with .hydra/overrides.yaml) found")
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return columns


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "/").replace("\n", " ")


def to_markdown(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    columns = columns or _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(multirun_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``sweep_report.csv``, ``sweep_report.md`` and the PNG plots; returns their paths."""
    rows = collect(multirun_dir)
    out = Path(out_dir or multirun_dir)
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    paths = {"csv": out / "sweep_report.csv", "markdown": out / "sweep_report.md"}
    atomic_write_text(paths["csv"], buffer.getvalue())
    failed = [r for r in rows if r["status"] != "ok"]
    summary = f"{len(rows)} jobs: {len(rows) - len(failed)} ok, {len(failed)} failed or unfinished\n\n"
    atomic_write_text(paths["markdown"], f"# Sweep report: {Path(multirun_dir)}\n\n{summary}{to_markdown(rows, columns)}\n")
    paths.update(plot(rows, out))
    return paths


def plot(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """nDCG@10 against each swept loss weight; throughput and peak memory per precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok" and r.get("ndcg@10") is not None]
    written: dict[str, Path] = {}
    weights = [k for k in _columns(rows) if k.startswith("loss.")]
    if ok and weights:
        fig, axes = plt.subplots(1, len(weights), figsize=(4.5 * len(weights), 3.6), squeeze=False)
        for ax, key in zip(axes[0], weights):
            groups: dict[str, list[tuple[float, float]]] = {}
            for r in ok:
                label = r.get("precision", "default")
                groups.setdefault(label, []).append((float(r[key]), float(r["ndcg@10"])))
            for label, points in sorted(groups.items()):
                points.sort()
                ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"precision={label}")
            ax.set_xlabel(key)
            ax.set_ylabel("val nDCG@10")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        written["ndcg_vs_loss_weights"] = _save(fig, out_dir / "ndcg_vs_loss_weights.png")
    if ok and any("train_pairs_per_s" in r for r in ok):
        by_precision: dict[str, list[dict]] = {}
        for r in ok:
            by_precision.setdefault(r.get("precision", "default"), []).append(r)
        names = sorted(by_precision)
        speed = [sum(float(r["train_pairs_per_s"]) for r in by_precision[n]) / len(by_precision[n]) for n in names]
        memory = [max(float(r["peak_rss_mb"]) for r in by_precision[n]) for n in names]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
        ax1.bar(names, speed, color="tab:blue")
        ax1.set_ylabel("training pairs / s (mean over jobs)")
        ax2.bar(names, memory, color="tab:orange")
        ax2.set_ylabel("peak RSS MiB (max over jobs)")
        for ax in (ax1, ax2):
            ax.set_xlabel("precision")
            ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        written["speed_memory_vs_precision"] = _save(fig, out_dir / "speed_memory_vs_precision.png")
    return written


def _save(fig, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
