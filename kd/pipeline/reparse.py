"""Re-score a finished run's held-out correctness from the judge replies it stored, with the current parser.

``python -m kd.pipeline.reparse RUN_DIR`` reads ``cycle_NN/heldout_scores.json``, parses each stored TP/FP/FN reply
again (``correctness.parse_classification``) and recombines it with the stored similarity: no model is loaded and
no judge is called. It prints, per cycle, the stored mean next to the re-parsed mean with its bootstrap 95 %
interval and the paired interval of the change since cycle 0 (unparseable replies count 0, as in the run). A row
whose answer statements did not parse has no stored classification reply: it stays a failure here, since only a
new judge call could classify it. Nothing in the run directory is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kd.pipeline import correctness
from kd.pipeline.stats import mean_ci, paired_diff_ci


def reparsed_score(row: dict) -> float | None:
    """The correctness of one stored held-out row under the current parser (None: still unparseable)."""
    c = row["correctness"]
    if c["status"] == "empty_answer":
        return 0.0
    raws = c.get("judge_raw") or []
    counts = correctness.parse_classification(raws[1]) if len(raws) > 1 else None
    if counts is None or c.get("similarity") is None:
        return None
    return correctness.combine(correctness.f1_from_counts(*counts), float(c["similarity"]))


def reparse_run(run_dir: Path, resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Per cycle ``{"cycle", "n", "stored": {mean, n_unparseable}, "reparsed": {mean, ci95, n_unparseable},
    "gain": {mean, ci95} | None}``; ``gain`` is the paired change of the re-parsed scores since cycle 0."""
    files = sorted(Path(run_dir).glob("cycle_*/heldout_scores.json"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no cycle_*/heldout_scores.json (a run with eval.heldout_per_topic > 0)")
    rows_out, base = [], None
    for f in files:
        record = json.loads(f.read_text())
        rows = record["data"]["scores"]
        stored = [r["correctness"]["score"] for r in rows]
        new = [reparsed_score(r) for r in rows]
        values = [0.0 if v is None else v for v in new]
        gain = None
        if base is None:
            base = values
        else:
            diff = paired_diff_ci(values, base, resamples, seed=seed)
            gain = {"mean": diff["mean"], "ci95": diff["ci95"]}
        rows_out.append({
            "cycle": int(record["cycle"]), "n": len(rows),
            "stored": {"mean": round(sum(v or 0.0 for v in stored) / len(rows), 6),
                       "n_unparseable": sum(v is None for v in stored)},
            "reparsed": {**mean_ci(values, resamples, seed=seed), "n_unparseable": sum(v is None for v in new)},
            "gain": gain})
    return rows_out


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"


def format_table(rows: list[dict]) -> str:
    lines = ["| cycle | n | stored mean (unparseable) | re-parsed mean [95 % CI] (unparseable) | change since cycle 0 "
             "[95 % CI] |", "|---|---|---|---|---|"]
    for r in rows:
        g = r["gain"]
        lines.append(f"| {r['cycle']} | {r['n']} | {r['stored']['mean']:.3f} ({r['stored']['n_unparseable']}) | "
                     f"{r['reparsed']['mean']:.3f} {_ci(r['reparsed']['ci95'])} ({r['reparsed']['n_unparseable']}) | "
                     + (f"{g['mean']:+.3f} {_ci(g['ci95'])} |" if g else "- |"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        rows = reparse_run(args.run_dir, args.resamples)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"kd.pipeline.reparse: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
