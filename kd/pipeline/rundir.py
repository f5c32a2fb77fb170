"""The run directory: one JSON file per step per cycle (atomic), a manifest with the config hash, resume.

Layout::

    <run_dir>/manifest.json            config (secrets redacted), config hash, status
    <run_dir>/kb.json                  step "knowledge_base"
    <run_dir>/cycle_01/questions.json  references.json  baseline_answers.json  baseline_scores.json
                       trainset.json  finetune.json (+ adapter/)  finetuned_answers.json  finetuned_scores.json
                       summary.json
    <run_dir>/report.json  report.md  plots/*.png

A step file holds ``{"step", "cycle", "config_hash", "seconds", "memory", "data"}``. Re-running into the same
directory (or ``resume=true``) loads every finished step instead of running it; a step file that is torn or
corrupt is reported, moved aside to ``*.corrupt`` and rebuilt. A config whose hash differs from the manifest's is
refused, naming the differing keys. ``kd-pipeline run_dir=X resume=true`` alone continues with the run's own saved
config (``resume_config``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from kd.io import atomic_write_json
from kd.pipeline.config import NON_SEMANTIC_KEYS, _drop, _get, config_diff, config_hash, redact, semantic_config

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STEP_ORDER = ("knowledge_base", "heldout_questions", "heldout_references", "questions", "references",
              "baseline_answers", "baseline_scores", "trainset", "finetune", "finetuned_answers", "heldout_answers",
              "finetuned_scores", "heldout_scores", "summary")
RUN_STEPS = ("knowledge_base",)  # once per run, before cycle 1
HELDOUT_RUN_STEPS = ("heldout_questions", "heldout_references")  # once per run, when eval.heldout_per_topic > 0
HELDOUT_BASELINE_STEPS = ("heldout_answers", "heldout_scores")  # cycle 0: the base student on the held-out set
CYCLE_STEPS = ("questions", "references", "baseline_answers", "baseline_scores", "trainset", "finetune",
               "finetuned_answers", "finetuned_scores", "summary")


def step_keys(cycles: int, heldout: bool = False) -> list[str]:
    """Every step key of a run with ``cycles`` cycles, in run order (held-out steps when ``heldout``)."""
    keys = list(RUN_STEPS)
    if heldout:
        keys += list(HELDOUT_RUN_STEPS) + [f"cycle0.{s}" for s in HELDOUT_BASELINE_STEPS]
    for c in range(1, cycles + 1):
        for s in CYCLE_STEPS:
            keys.append(f"cycle{c}.{s}")
            if heldout and s == "finetuned_answers":
                keys.append(f"cycle{c}.heldout_answers")
            if heldout and s == "finetuned_scores":
                keys.append(f"cycle{c}.heldout_scores")
    return keys


REDACTED = "***"  # what ``config.redact`` writes in place of a secret
# not hashed, but the run's own choice: kept in the manifest so that a bare ``resume=true`` uses them again
RUN_SETTINGS = tuple(k for k in NON_SEMANTIC_KEYS if k not in ("run_dir", "resume", "debug"))


class ConfigMismatchError(RuntimeError):
    """The run directory was created with a different configuration."""


def run_settings(cfg: Mapping) -> dict:
    """Dotted key -> value of the ``RUN_SETTINGS`` (threads, timeouts, ``teacher.api_key_env`` ...), redacted."""
    missing = object()
    return redact({k: v for k in RUN_SETTINGS if (v := _get(cfg, k, missing)) is not missing})


def _set(cfg: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = cfg
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = copy.deepcopy(value)


def _is_explicit(dotted: str, explicit: set[str]) -> bool:
    """``dotted`` or a key above it was given on the command line."""
    parts = dotted.split(".")
    return any(".".join(parts[:i]) in explicit for i in range(1, len(parts) + 1))


def _leaves(tree: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in tree.items():
        if isinstance(v, Mapping) and v:
            out.extend(_leaves(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def resume_config(cfg: Mapping, explicit_keys: Iterable[str]) -> dict:
    """The config that ``resume=true`` continues: the run's own saved config (``manifest.json``) for every key not in
    ``explicit_keys`` (the keys given on the command line; ``pipeline/teacher=...`` counts as ``teacher``), the
    current ``cfg`` for the rest. A redacted value (``***``) in the manifest is never used: it comes from the
    current config / environment; a key the saved config lacks (e.g. ``teacher.device`` of the default local
    teacher when the run used the API teacher) is dropped. An explicit key that differs from the saved run is then
    refused by ``RunDir`` (config hash), as before. Without a manifest in ``run_dir``, ``cfg`` is returned
    unchanged."""
    out = copy.deepcopy(dict(cfg))
    manifest_path = Path(str(cfg.get("run_dir") or "")) / MANIFEST
    if not cfg.get("resume") or not cfg.get("run_dir") or not manifest_path.is_file():
        return out
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError:
        return out  # RunDir reports the corrupt manifest
    saved = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(saved, dict):
        return out
    explicit = {k.split("/")[-1] for k in explicit_keys}  # config groups: their package is their name
    restored = []  # keys whose value now differs from the current config's
    saved_keys = {k for k, _ in _leaves(saved)}
    # not in the saved config by design; a redacted value's current value (a subtree, too) is kept
    keep = explicit | set(NON_SEMANTIC_KEYS) | {k for k, v in _leaves(saved) if v == REDACTED}
    for dotted, _ in _leaves(out):
        if dotted not in saved_keys and not _is_explicit(dotted, keep):
            _drop(out, dotted)
            restored.append(dotted)
    for dotted, value in [*_leaves(saved), *(manifest.get("run_settings") or {}).items()]:
        if value == REDACTED or _is_explicit(dotted, explicit):
            continue
        if _get(out, dotted, default=object()) != value:
            restored.append(dotted)
        _set(out, dotted, value)
    log.info("resume=true: continuing %s with its saved config%s", cfg["run_dir"],
             f" (from the manifest: {', '.join(restored)})" if restored else "")
    return out


class RunDir:
    def __init__(self, path: str | os.PathLike, cfg: dict, resume: bool = False, mem_log: list | None = None):
        self.path = Path(path)
        self.mem_log = mem_log if mem_log is not None else []  # memory events (model loads/frees) of this process
        self.cfg = cfg
        self.hash = config_hash(cfg)
        self.executed: list[str] = []  # step keys run in this process
        self.skipped: list[str] = []  # step keys loaded from disk
        self.rebuilt: list[str] = []  # step keys whose file was corrupt
        self._open(resume)

    # ------------------------------------------------------------------ manifest
    def _open(self, resume: bool) -> None:
        manifest = self.path / MANIFEST
        if manifest.is_file():
            try:
                old = json.loads(manifest.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigMismatchError(f"{manifest} is corrupt ({exc}); cannot tell which config made this run. "
                                          "Use a new run_dir.") from None
            if old.get("config_hash") != self.hash:
                diffs = config_diff(old.get("config", {}), semantic_config(self.cfg))
                raise ConfigMismatchError(
                    f"run_dir {self.path} was made with a different config (hash {old.get('config_hash')} vs "
                    f"{self.hash}); refusing to mix results. Changed keys: {'; '.join(diffs) or '?'}. "
                    "Re-run with the original config to resume, or choose a new run_dir."
                )
            log.info("resuming run %s (config hash %s)", self.path, self.hash)
            self.manifest = old
            self.manifest["resumed"] = int(old.get("resumed", 0)) + 1
        else:
            if resume:
                log.warning("resume=true but %s holds no manifest: starting a new run there", self.path)
            self.manifest = {"config_hash": self.hash, "config": semantic_config(self.cfg),
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "status": "running",
                             "resumed": 0}
        self.manifest["status"] = "running"
        self.manifest["run_settings"] = run_settings(self.cfg)
        atomic_write_json(manifest, self.manifest)

    def finish(self) -> None:
        self.manifest["status"] = "finished"
        atomic_write_json(self.path / MANIFEST, self.manifest)

    # ------------------------------------------------------------------ steps
    def cycle_dir(self, cycle: int | None) -> Path:
        return self.path if cycle is None else self.path / f"cycle_{cycle:02d}"

    def step_path(self, name: str, cycle: int | None = None) -> Path:
        return self.cycle_dir(cycle) / f"{name}.json"

    @staticmethod
    def key(name: str, cycle: int | None) -> str:
        return name if cycle is None else f"cycle{cycle}.{name}"

    def load_step(self, name: str, cycle: int | None = None) -> dict | None:
        """The finished step's record, or None (missing, or corrupt: moved aside and reported)."""
        path = self.step_path(name, cycle)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or record.get("step") != name or "data" not in record:
                raise ValueError("not a step record")
            if record.get("config_hash") != self.hash:
                raise ValueError(f"written by config {record.get('config_hash')}, not {self.hash}")
        except (ValueError, UnicodeDecodeError) as exc:
            bad = path.with_name(path.name + ".corrupt")
            os.replace(path, bad)
            log.warning("step file %s is corrupt (%s): moved to %s, the step is run again", path, exc, bad.name)
            self.rebuilt.append(self.key(name, cycle))
            return None
        return record

    def step(self, name: str, fn: Callable[[], Any], cycle: int | None = None,
             memory: Callable[[], list] | None = None) -> Any:
        """Return the saved result of step ``name`` or run ``fn()`` and save its result atomically."""
        record = self.load_step(name, cycle)
        key = self.key(name, cycle)
        if record is not None:
            log.info("step %s: done earlier, loaded %s", key, self.step_path(name, cycle))
            self.skipped.append(key)
            return record["data"]
        log.info("step %s: running", key)
        start = time.perf_counter()
        n_events = len(self.mem_log)
        data = fn()
        seconds = time.perf_counter() - start
        from kd.pipeline.memory import snapshot

        mem = list(self.mem_log[n_events:])  # model loads / frees during the step
        if isinstance(data, dict) and isinstance(data.get("memory"), list):  # stages inside the step (fine-tune)
            mem += list(data["memory"])
        mem += memory() if memory else [snapshot(f"after {key}")]
        record = {"step": name, "cycle": cycle, "config_hash": self.hash, "seconds": round(seconds, 3),
                  "memory": mem, "data": data}
        atomic_write_json(self.step_path(name, cycle), record)
        self.executed.append(key)
        log.info("step %s: finished in %.1f s", key, seconds)
        return data

    def records(self) -> list[dict]:
        """Every finished step record (without its data), in run order."""
        out = []
        for path in self.path.rglob("*.json"):
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if isinstance(rec, dict) and "step" in rec and "seconds" in rec:
                out.append({k: v for k, v in rec.items() if k != "data"} | {"key": self.key(rec["step"], rec.get("cycle"))})
        order = {name: i for i, name in enumerate(STEP_ORDER)}
        return sorted(out, key=lambda r: (r.get("cycle") or 0, order.get(r["step"], len(order)), r["step"]))
