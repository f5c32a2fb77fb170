"""One sweep job: run it, record its status, and never let one failure stop the sweep.

Each job's output folder gets ``status.json``: ``{"status": "ok"|"failed", "metric": ..., "error": ...,
"config": <fingerprint>}``. Re-launching an interrupted sweep into the same ``hydra.sweep.dir`` skips every job
whose folder says ``ok`` for the same config and resumes a job that left a checkpoint (``kd/retrieval/checkpointing.py``)
for the same config; other jobs run from the start.
In a multirun, a job that raises (out of memory, a NaN loss, a bad combination) is recorded as failed, its
W&B run is closed with a failing exit code, and the job returns NaN, which Hydra's basic sweeper accepts and
the Optuna sweeper records as a failed trial; the other jobs go on. In a single run the error propagates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import traceback
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from kd.io import atomic_write_json

log = logging.getLogger(__name__)

VOLATILE_KEYS = ("paths", "run_name", "resume")


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def config_fingerprint(cfg: DictConfig) -> str:
    """A hash of the resolved config without what changes between launches of the same job (paths, run name)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in VOLATILE_KEYS:
        container.pop(key, None)
    if isinstance(container.get("logger"), dict):
        container["logger"].pop("name", None)
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def finished_metric(output_dir: Path, fingerprint: str) -> float | None:
    """The recorded metric of a job that already finished in ``output_dir`` with the same config, else None."""
    try:
        status = json.loads((output_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    if status.get("status") == "ok" and status.get("config") == fingerprint and status.get("metric") is not None:
        return float(status["metric"])
    return None


def interrupted_checkpoint(output_dir: Path, fingerprint: str) -> Path | None:
    """The checkpoint an interrupted job left in ``output_dir``, if that job ran the same config."""
    from kd.retrieval.checkpointing import run_checkpoint

    checkpoint, saved = run_checkpoint(output_dir), output_dir / "resolved_config.yaml"
    if checkpoint is None or not saved.is_file():
        return None
    return checkpoint if config_fingerprint(OmegaConf.load(saved)) == fingerprint else None


def run_job(cfg: DictConfig, task: Callable[[DictConfig], dict], metric: str = "ndcg@10",
            tolerate_failure: bool | None = None, skip_finished: bool | None = None) -> float:
    """Run ``task(cfg)`` and return ``results["after"][metric]``; on failure in a sweep, record it and return NaN.

    In a sweep (or with ``skip_finished=True``) a job already finished with this config is not run again, and one
    interrupted with a checkpoint is resumed from it.
    """
    output_dir = Path(cfg.paths.output_dir)
    tolerate = in_multirun() if tolerate_failure is None else tolerate_failure
    fingerprint = config_fingerprint(cfg)
    if in_multirun() if skip_finished is None else skip_finished:
        previous = finished_metric(output_dir, fingerprint)
        if previous is not None:
            log.info("job already finished in %s (%s=%s): skipped", output_dir, metric, previous)
            return previous
        checkpoint = interrupted_checkpoint(output_dir, fingerprint)
        if checkpoint is not None and not cfg.get("resume"):
            log.info("job was interrupted: resuming it from %s", checkpoint)
            cfg.resume = str(output_dir)
    try:
        results = task(cfg)
    except Exception as error:  # noqa: BLE001 - every failure is recorded, then re-raised outside sweeps
        atomic_write_json(output_dir / "status.json", {
            "status": "failed", "metric": None, "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(limit=20),
        })
        _close_wandb(exit_code=1)
        if not tolerate:
            raise
        log.error("job failed, the sweep goes on: %s: %s", type(error).__name__, error)
        return math.nan
    value = float(results["after"][metric])
    atomic_write_json(output_dir / "status.json",
                      {"status": "ok", "metric": value, "metric_name": metric, "config": fingerprint})
    return value


def _close_wandb(exit_code: int) -> None:
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
