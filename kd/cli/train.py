"""``kd-train``: Hydra entry point for retrieval distillation (config: conf/train.yaml)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import kd.config  # noqa: F401  (registers the ${kd.*} resolvers)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    from kd.train_retrieval import main_metric, run_training

    return main_metric(run_training(cfg))


if __name__ == "__main__":
    main()
