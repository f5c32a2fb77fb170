"""``kd-train``: Hydra entry point for retrieval distillation (config: conf/train.yaml).

Returns the distilled student's validation nDCG@10, the value Hydra sweepers (grid, Optuna) optimise.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import kd.config  # noqa: F401  (registers the ${kd.*} resolvers)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    from kd.errors import exit_on_user_error
    from kd.sweep.job import run_job
    from kd.retrieval.run import run_training

    with exit_on_user_error("kd-train"):  # bad data or config: one clear line (sweeps record it in status.json)
        return run_job(cfg, run_training, metric=cfg.get("sweep_metric", "ndcg@10"))


if __name__ == "__main__":
    main()
