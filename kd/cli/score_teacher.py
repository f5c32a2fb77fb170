"""``kd-score-teacher``: fill the teacher score cache ahead of training (same config as kd-train).

Scores every (query, candidate) pair of the first epoch's training examples (positives, given, mined and
epoch-0 random negatives) in length-sorted batches, and saves the cache. Later runs, epochs and sweep jobs
with the same teacher, precision and max length read the scores instead of running the teacher.

    kd-score-teacher data=scifact            # then: kd-train data=scifact
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import kd.config  # noqa: F401

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def fill_cache(cfg: DictConfig) -> dict[str, float]:
    """Returns pairs scored, pairs already cached and seconds."""
    from kd.errors import ConfigError
    from kd.resources import Stopwatch
    from kd.teacher_cache import score_with_cache
    from kd.train_retrieval import prepare

    prepared = prepare(cfg)
    if prepared.score_cache is None:
        raise ConfigError("teacher.cache=false: there is no cache to fill")
    datamodule = prepared.datamodule
    datamodule.setup("fit")
    items = [datamodule.train_set[(i, 0)] for i in range(len(datamodule.train_set))]
    queries = [item["query"] for item in items for _ in item["docs"]]
    documents = [doc for item in items for doc in item["docs"]]
    before_misses = prepared.score_cache.misses
    with Stopwatch() as clock:
        score_with_cache(prepared.score_cache, prepared.teacher, queries, documents,
                         batch_size=cfg.teacher.score_batch_size)
    prepared.score_cache.save()
    scored = prepared.score_cache.misses - before_misses
    print(f"teacher score cache {prepared.score_cache.path}: {len(queries)} pairs, {scored} scored now "
          f"({scored / max(clock.seconds, 1e-9):.1f} pairs/s), {len(queries) - scored} already cached, "
          f"{len(prepared.score_cache)} in the cache")
    return {"pairs": len(queries), "scored": scored, "seconds": clock.seconds}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    from kd.cli.user_errors import exit_on_user_error

    with exit_on_user_error("kd-score-teacher"):
        fill_cache(cfg)


if __name__ == "__main__":
    main()
