"""OmegaConf resolvers used by kd's Hydra configs (registered on import).

- ``${kd.shared:data/scifact/scifact.zip}``: a path inside the shared data folder (see ``kd.paths.shared_dir``)
- ``${kd.cache:}``: kd's cache folder (``KD_CACHE_DIR`` or ``~/.cache/kd``)
- ``${kd.sweep_group:}`` / ``${kd.job_name:<default>}``: the W&B group (sweep folder) and run name of a
  multirun job (None / the default outside multiruns)
- ``${kd.wandb_offline:}``: True unless a W&B key is available (``WANDB_API_KEY``) and ``WANDB_MODE`` is not
  ``offline``; runs are then synced live, otherwise written to ``wandb/offline-run-*`` for ``wandb sync``.

Also ``command_line_keys()``: the keys a Hydra job got on its command line (kd-train and kd-pipeline resume with a
run's saved config and need to tell explicit settings from defaults).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from kd.paths import cache_dir, shared_path


def wandb_offline() -> bool:
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    return not os.environ.get("WANDB_API_KEY")


def sweep_group() -> str | None:
    """The sweep folder's name inside a Hydra multirun (W&B group of its jobs), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return None


def job_name(default: str) -> str:
    """``<sweep>-job<N>`` inside a multirun (one W&B run per job), else ``default``."""
    group = sweep_group()
    if group is None:
        return default
    from hydra.core.hydra_config import HydraConfig

    return f"{group}-job{HydraConfig.get().job.num}"


def command_line_keys() -> list[str]:
    """Config keys (and config groups such as ``pipeline/teacher``) set on this Hydra job's command line;
    ``[]`` outside Hydra, ``hydra.*`` left out. Resuming uses it to tell explicit settings from defaults."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    keys = [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]
    return [k for k in keys if not k.startswith("hydra.")]


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("kd.shared", shared_path, replace=True)
    OmegaConf.register_new_resolver("kd.cache", lambda: str(cache_dir()), replace=True)
    OmegaConf.register_new_resolver("kd.wandb_offline", wandb_offline, replace=True)
    OmegaConf.register_new_resolver("kd.sweep_group", sweep_group, replace=True)
    OmegaConf.register_new_resolver("kd.job_name", job_name, replace=True)


register_resolvers()
