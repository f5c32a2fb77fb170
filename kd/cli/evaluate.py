"""``kd-eval``: FAISS retrieval metrics of a bi-encoder (and of a cross-encoder reranking it). Config: conf/eval.yaml."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import kd.config  # noqa: F401  (registers the ${kd.*} resolvers)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def run_evaluation(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Returns {"student": metrics, ["reranked": metrics]} and prints them as a table."""
    from kd.errors import ConfigError
    from kd.io import atomic_write_json
    from kd.retrieval.metrics.evaluate import evaluate_bi_encoder, rerank
    from kd.retrieval.metrics.retrieval import retrieval_metrics
    from kd.retrieval.models.bi_encoder import BiEncoder
    from kd.retrieval.run import format_table, load_splits

    from omegaconf import OmegaConf

    from kd.retrieval.metrics.corpus_shards import corpus_fingerprint, encode_shard, load_shards, parse_shard

    splits = load_splits(cfg)
    student = BiEncoder(cfg.student.name_or_path, max_length=cfg.student.max_length)
    fingerprint = corpus_fingerprint(splits.corpus, cfg.student.name_or_path)
    if cfg.get("shard"):
        if not cfg.get("embeddings_dir"):
            raise ConfigError("shard=i/n needs embeddings_dir=<folder> to write the shard to")
        shard, num_shards = parse_shard(cfg.shard)
        path = encode_shard(student, splits.corpus, shard, num_shards, cfg.embeddings_dir,
                            cfg.data.eval_batch_size, fingerprint)
        print(f"corpus shard {shard}/{num_shards} written to {path}")
        return {}
    doc_embeddings = load_shards(cfg.embeddings_dir, splits.corpus, fingerprint) if cfg.get("embeddings_dir") else None
    index = OmegaConf.to_container(cfg.index, resolve=True) if cfg.get("index") else None
    metrics, run = evaluate_bi_encoder(student, splits.corpus, splits.eval_queries, splits.eval_qrels, k=cfg.k,
                                       batch_size=cfg.data.eval_batch_size, show_progress=True, index=index,
                                       doc_embeddings=doc_embeddings)
    rows = {f"bi-encoder {cfg.student.name_or_path}": metrics}
    if cfg.rerank_with:
        from kd.retrieval.models.cross_encoder import CrossEncoder

        teacher = CrossEncoder(cfg.rerank_with, max_length=cfg.rerank_max_length)
        reranked = rerank(teacher, splits.corpus, splits.eval_queries, run, depth=cfg.rerank_depth)
        rows[f"+ rerank top-{cfg.rerank_depth} with {cfg.rerank_with}"] = retrieval_metrics(reranked, splits.eval_qrels)
    print(f"\n{len(splits.eval_queries)} queries, {len(splits.corpus)} documents\n{format_table(rows)}")
    if cfg.output:
        atomic_write_json(cfg.output, rows)
    return rows


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    from kd.errors import exit_on_user_error

    with exit_on_user_error("kd-eval"):
        rows = run_evaluation(cfg)
    return float(next(iter(rows.values()))["ndcg@10"]) if rows else float("nan")


if __name__ == "__main__":
    main()
