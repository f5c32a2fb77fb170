"""What the page shows about runs, read from the run folders the pipeline writes (``kd.pipeline.rundir``):
the runs in the output folder with their status, the live progress of one run (its step files), its log, the
plain-words error of a failed run, and its report.

Files the UI adds to a run folder: ``ui_run.json`` (the overrides it was started with, exit code, error) and
``ui.log`` (the pipeline's output).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from kd.pipeline.rundir import HELDOUT_RUN_STEPS, MANIFEST, RUN_STEPS, step_keys

UI_RUN = "ui_run.json"
UI_LOG = "ui.log"

# what a failure means, in plain words, keyed on the exception class named in the log
ERROR_HINTS = {
    "TeacherError": "The teacher could not be reached or kept failing",
    "DataFormatError": "Knowledge base problem",
    "ConfigError": "Invalid setting",
    "ConfigMismatchError": "This run folder was made with other settings",
    "ModelIntegrityError": "A model could not be loaded",
    "InjectedCrash": "Fault injection (debug.crash_after)",
    "OutOfMemoryError": "Out of memory",
}
_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Crash|Interrupt))(?::\s*(.*))?$")


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def has_heldout(run_dir: Path, done: dict[str, float]) -> bool:
    """Whether the run evaluates on a held-out set (its saved config says so, or a held-out step exists)."""
    manifest = read_json(run_dir / MANIFEST) or {}
    per_topic = ((manifest.get("config") or {}).get("eval") or {}).get("heldout_per_topic")
    if isinstance(per_topic, int):
        return per_topic > 0
    return any("heldout" in k for k in done)


def finished_steps(run_dir: Path) -> dict[str, float]:
    """Step key -> seconds, for every step file the pipeline has written."""
    out: dict[str, float] = {}
    run_level = [run_dir / f"{name}.json" for name in (*RUN_STEPS, *HELDOUT_RUN_STEPS)]
    for path in [*run_level, *sorted(run_dir.glob("cycle_*/*.json"))]:
        rec = read_json(path)
        if rec and "step" in rec and "seconds" in rec:
            key = rec["step"] if rec.get("cycle") is None else f"cycle{rec['cycle']}.{rec['step']}"
            out[key] = float(rec["seconds"])
    return out


def cycles_of(run_dir: Path) -> int | None:
    ui = read_json(run_dir / UI_RUN) or {}
    if isinstance(ui.get("cycles"), int):
        return ui["cycles"]
    manifest = read_json(run_dir / MANIFEST) or {}
    cycles = (manifest.get("config") or {}).get("cycles")
    return cycles if isinstance(cycles, int) else None


def log_tail(run_dir: Path, n: int = 60) -> list[str]:
    path = run_dir / UI_LOG
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64_000))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()][-n:]


def error_from_log(lines: list[str], exit_code: int | None) -> str:
    """The failure in plain words: the CLI's one-line error, else the last exception line of a traceback."""
    for line in reversed(lines):
        if line.startswith("kd-pipeline: error: "):
            message = line[len("kd-pipeline: error: "):]
            if message.startswith("teacher "):  # TeacherError messages start with the teacher's URL
                return f"{ERROR_HINTS['TeacherError']}: {message}"
            return message
    for line in reversed(lines):
        m = _EXC_LINE.match(line.strip())
        if m:
            name, message = m.group(1), m.group(2) or ""
            hint = ERROR_HINTS.get(name, name)
            return f"{hint}: {message}" if message else hint
    if exit_code is not None and exit_code < 0:
        return f"The pipeline process was killed (signal {-exit_code})."
    return f"The pipeline stopped with exit code {exit_code}; see the log."


def status_of(run_dir: Path, running: bool) -> str:
    """running | finished | failed | stopped | unfinished (interrupted; can be resumed) | not started."""
    if running:
        return "running"
    manifest = read_json(run_dir / MANIFEST) or {}
    if manifest.get("status") == "finished":
        return "finished"
    ui = read_json(run_dir / UI_RUN) or {}
    if ui.get("stopped"):
        return "stopped"
    if ui.get("error"):
        return "failed"
    if manifest:
        return "unfinished"
    return "not started"


def resumable(run_dir: Path, status: str) -> bool:
    """An interrupted run the page can resume: started from the page (its overrides saved in ``ui_run.json``) or
    with ``kd-pipeline`` (its config saved in the manifest; the page resumes it with ``run_dir=... resume=true``)."""
    ui = read_json(run_dir / UI_RUN) or {}
    return status in ("failed", "stopped", "unfinished") and bool(ui.get("overrides") or (run_dir / MANIFEST).is_file())


def run_state(run_dir: Path, running: bool, log_lines: int = 60) -> dict[str, Any]:
    """Progress of one run: status, cycle and step now running, finished steps with their seconds, log tail."""
    cycles = cycles_of(run_dir)
    done = finished_steps(run_dir)
    ui = read_json(run_dir / UI_RUN) or {}
    status = status_of(run_dir, running)
    keys = step_keys(cycles, has_heldout(run_dir, done)) if cycles else list(done)
    current = next((k for k in keys if k not in done), None) if status == "running" else None
    current_cycle = int(current.split(".")[0][5:]) if current and current.startswith("cycle") else (
        0 if current else None)
    since = None
    if current:
        stamps = [p.stat().st_mtime for p in run_dir.glob("**/*.json") if p.name != UI_RUN] or [ui.get("started_unix", 0)]
        since = round(max(0.0, time.time() - max(max(stamps), ui.get("started_unix", 0))), 1)
    return {
        "name": run_dir.name,
        "status": status,
        "cycles": cycles,
        "current_step": current,
        "current_cycle": current_cycle,
        "current_step_elapsed_s": since,
        "steps": [{"key": k, "seconds": done[k]} for k in keys if k in done],
        "n_steps": len(keys),
        "error": ui.get("error") if status in ("failed", "stopped") else None,
        "log": log_tail(run_dir, log_lines),
        "has_report": (run_dir / "report.json").is_file(),
        "resumable": resumable(run_dir, status),
    }


def list_runs(output_dir: Path, active: str | None) -> list[dict[str, Any]]:
    """Run folders directly under ``output_dir`` (those with a manifest or a ``ui_run.json``), newest first."""
    rows = []
    if not output_dir.is_dir():
        return rows
    for d in output_dir.iterdir():
        if not d.is_dir() or not ((d / MANIFEST).is_file() or (d / UI_RUN).is_file()):
            continue
        manifest = read_json(d / MANIFEST) or {}
        ui = read_json(d / UI_RUN) or {}
        status = status_of(d, d.name == active)
        rows.append({
            "name": d.name,
            "status": status,
            "created": manifest.get("created") or ui.get("started", ""),
            "cycles": cycles_of(d),
            "steps_done": len(finished_steps(d)),
            "has_report": (d / "report.json").is_file(),
            "resumable": resumable(d, status),
            "started_in_ui": bool(ui.get("overrides")),
            "error": ui.get("error") if status in ("failed", "stopped") else None,
            "mtime": max((p.stat().st_mtime for p in (d / MANIFEST, d / UI_RUN) if p.is_file()), default=0.0),
        })
    return sorted(rows, key=lambda r: r["mtime"], reverse=True)


def load_report(run_dir: Path) -> dict | None:
    return read_json(run_dir / "report.json")
