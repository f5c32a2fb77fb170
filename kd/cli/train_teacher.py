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
    from kd.retrieval.data.mining import bm25_rankings
    from kd.retrieval.metrics.evaluate import rerank
    from kd.retrieval.metrics.retrieval import retrieval_metrics
    from kd.retrieval.models.cross_encoder import CrossEncoder
    from kd.retrieval.teacher_training import ensure_teacher
    from kd.retrieval.run import format_table, load_splits

    splits = load_splits(cfg)
    path = ensure_teacher(cfg.teacher, splits, cfg.paths.cache_dir, seed=cfg.seed)
    teacher = CrossEncoder(path, max_length=cfg.teacher.max_length)
    bm25 = bm25_rankings(splits.corpus, splits.eval_queries, max(rerank_depth, 100))
    reranked = rerank(teacher, splits.corpus, splits.eval_queries, bm25, depth=rerank_depth,
                      batch_size=cfg.teacher.score_batch_size)
    rows = {"BM25": retrieval_metrics(bm25, splits.eval_qrels),
            f"teacher reranking BM25 top-{rerank_depth}": retrieval_metrics(reranked, splits.eval_qrels)}
    print(f"teacher: {path}\n{format_table(rows)}")
    return {"teacher": path, **rows}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    from kd.errors import exit_on_user_error

    with exit_on_user_error("kd-train-teacher"):
        train_and_report(cfg)


if __name__ == "__main__":
    main()
