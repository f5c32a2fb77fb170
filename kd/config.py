"""OmegaConf resolvers used by kd's Hydra configs (registered on import).

- ``${kd.shared:data/scifact/scifact.zip}``: a path inside the shared data folder (see ``kd.paths.shared_dir``)
- ``${kd.cache:}``: kd's cache folder (``KD_CACHE_DIR`` or ``~/.cache/kd``)
- ``${kd.wandb_offline:}``: True unless a W&B key is available (``WANDB_API_KEY``) and ``WANDB_MODE`` is not
  ``offline``; runs are then synced live, otherwise written to ``wandb/offline-run-*`` for ``wandb sync``.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from kd.paths import cache_dir, shared_path


def wandb_offline() -> bool:
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    return not os.environ.get("WANDB_API_KEY")


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("kd.shared", shared_path, replace=True)
    OmegaConf.register_new_resolver("kd.cache", lambda: str(cache_dir()), replace=True)
    OmegaConf.register_new_resolver("kd.wandb_offline", wandb_offline, replace=True)


register_resolvers()
