"""``kd-score-teacher``: fill the teacher score cache ahead of training (same config as kd-train).

Scores every (query, candidate) pair of the first epoch's training examples (positives, given, mined and
epoch-0 random negatives) in length-sorted batches, and saves the cache. Later runs, epochs and sweep jobs
with the same teacher, precision and max length read the scores instead of running the teacher.

    kd-score-teacher data=scifact            # then: kd-train data=scifact
    kd-score-teacher data=scifact trainer=ddp trainer.devices=8   # sharded over 8 GPUs / processes

Scoring runs through ``Trainer.predict`` (``kd/retrieval/teacher_scoring.py``): with several devices each process scores
a disjoint share of the pairs and writes its own shard, and rank 0 merges the shards into the one cache file.
(The teacher filter of mined negatives runs before that, in each process, during data setup.)
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import kd.config  # noqa: F401

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def fill_cache(cfg: DictConfig) -> dict[str, float]:
    """Returns pairs scored, pairs already cached and seconds."""
    from hydra.utils import instantiate

    from kd.errors import ConfigError
    from kd.resources import Stopwatch
    from kd.retrieval.teacher_scoring import score_pairs_sharded
    from kd.retrieval.run import prepare

    prepared = prepare(cfg)
    if prepared.score_cache is None:
        raise ConfigError("teacher.cache=false: there is no cache to fill")
    datamodule = prepared.datamodule
    datamodule.setup("fit")
    items = [datamodule.train_set[(i, 0)] for i in range(len(datamodule.train_set))]
    queries = [item["query"] for item in items for _ in item["docs"]]
    documents = [doc for item in items for doc in item["docs"]]
    prepared.score_cache.save()  # pairs the teacher filter scored while mining
    # the predict loop's pairs are split by Lightning's distributed sampler (training uses kd's own: see conf/trainer)
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False, use_distributed_sampler=True)
    with Stopwatch() as clock:
        scored = score_pairs_sharded(trainer, prepared.teacher, prepared.score_cache, queries, documents,
                                     batch_size=cfg.teacher.score_batch_size)
    if not trainer.is_global_zero:
        return {"pairs": len(queries), "scored": scored, "seconds": clock.seconds}
    print(f"teacher score cache {prepared.score_cache.path}: {len(queries)} pairs, {scored} distinct pairs scored "
          f"now over {trainer.world_size} process(es) ({scored / max(clock.seconds, 1e-9):.1f} pairs/s), "
          f"{len(prepared.score_cache)} in the cache")
    return {"pairs": len(queries), "scored": scored, "seconds": clock.seconds}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    from kd.errors import exit_on_user_error

    with exit_on_user_error("kd-score-teacher"):
        fill_cache(cfg)


if __name__ == "__main__":
    main()
