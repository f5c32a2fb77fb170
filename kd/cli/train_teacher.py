"""``kd-train-teacher``: stage 1 alone: train (or find cached) the cross-encoder teacher and report its quality.

Same config as kd-train (conf/train.yaml). Prints where the teacher is and its nDCG@10 / recall@10 when it
reranks BM25's top ``rerank_depth`` for the eval queries, next to BM25 alone.

    kd-train-teacher data=scifact
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import kd.config  # noqa: F401

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def train_and_report(cfg: DictConfig, rerank_depth: int = 20) -> dict:
    """Train (or find) the cross-encoder of ``cfg.teacher`` with the dev split held out; its reranking of BM25's
    top ``rerank_depth`` on the dev and the eval queries, next to BM25 alone."""
    from kd.errors import ConfigError
    from kd.retrieval.data.mining import bm25_rankings
    from kd.retrieval.dev_split import carve_dev_split
    from kd.retrieval.metrics.evaluate import rerank
    from kd.retrieval.metrics.retrieval import retrieval_metrics
    from kd.retrieval.models.cross_encoder import CrossEncoder
    from kd.retrieval.teacher_training import ensure_teacher
    from kd.retrieval.run import format_table, load_splits

    if cfg.teacher.get("kind") != "cross_encoder":
        raise ConfigError(f"kd-train-teacher trains a cross-encoder; teacher={cfg.teacher.get('kind')} is not one "
                          "(use teacher=cross_encoder or teacher=cross_encoder_distilled)")
    splits, dev = carve_dev_split(load_splits(cfg), float(cfg.data.get("dev_fraction", 0.0)), seed=cfg.seed)
    path = ensure_teacher(cfg.teacher, splits, cfg.paths.cache_dir, seed=cfg.seed, dev=dev)
    teacher = CrossEncoder(path, max_length=cfg.teacher.max_length)
    rows = {}
    for split, queries, qrels in [("dev", dev.queries if dev else {}, dev.qrels if dev else {}),
                                  ("eval", splits.eval_queries, splits.eval_qrels)]:
        if not queries:
            continue
        bm25 = bm25_rankings(splits.corpus, queries, max(rerank_depth, 100))
        reranked = rerank(teacher, splits.corpus, queries, bm25, depth=rerank_depth,
                          batch_size=cfg.teacher.score_batch_size)
        rows[f"BM25 ({split})"] = retrieval_metrics(bm25, qrels)
        rows[f"teacher reranking BM25 top-{rerank_depth} ({split})"] = retrieval_metrics(reranked, qrels)
    print(f"teacher: {path}\n{format_table(rows)}")
    return {"teacher": path, **rows}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    from kd.errors import exit_on_user_error

    with exit_on_user_error("kd-train-teacher"):
        train_and_report(cfg)


if __name__ == "__main__":
    main()
