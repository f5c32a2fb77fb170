"""One sweep job: run it, record its status, and never let one failure stop the sweep.

Each job's output folder gets ``status.json``: ``{"status": "ok"|"failed", "metric": ..., "error": ...}``.
In a multirun, a job that raises (out of memory, a NaN loss, a bad combination) is recorded as failed, its
W&B run is closed with a failing exit code, and the job returns NaN, which Hydra's basic sweeper accepts and
the Optuna sweeper records as a failed trial; the other jobs go on. In a single run the error propagates.
"""

from __future__ import annotations

import logging
import math
import traceback
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from kd.io import atomic_write_json

log = logging.getLogger(__name__)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig, task: Callable[[DictConfig], dict], metric: str = "ndcg@10",
            tolerate_failure: bool | None = None) -> float:
    """Run ``task(cfg)`` and return ``results["after"][metric]``; on failure in a sweep, record it and return NaN."""
    output_dir = Path(cfg.paths.output_dir)
    tolerate = in_multirun() if tolerate_failure is None else tolerate_failure
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
    atomic_write_json(output_dir / "status.json", {"status": "ok", "metric": value, "metric_name": metric})
    return value


def _close_wandb(exit_code: int) -> None:
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
