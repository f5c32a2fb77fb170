"""Approximate FAISS indexes vs. the exact flat index: build time, search speed, memory, recall (and nDCG@10).

Two corpora:
  - ``scifact``: the full BEIR SciFact corpus (5183 abstracts) and its 300 test claims, embedded with the packaged
    all-MiniLM-L6-v2 student (encoded in ``--shards`` shards, kept in ``--embeddings-dir`` and reused);
    reports nDCG@10 of each index against the qrels as well.
  - ``synthetic``: ``--size`` clustered unit vectors of ``--dim`` dims (recall on uniform random vectors says
    nothing: they have no neighbourhood structure). Generated with a fixed seed in two levels: 100 topic
    centres ~ N(0, I); 100 sub-topic centres per topic = topic + 0.8·N(0, I); each vector = its sub-topic
    centre + 0.8·N(0, I), L2-normalised (uniform choice of sub-topic). Queries: ``--queries`` fresh vectors drawn
    the same way.

Recall@k of an index = share of the flat index's top-k ids it also returns, mean over queries.

    OMP_NUM_THREADS=2 python scripts/benchmark_index.py scifact
    OMP_NUM_THREADS=2 python scripts/benchmark_index.py synthetic --size 1000000 --hnsw-m 16 --ef-construction 40

``--smoke`` builds every index kind in seconds, so the script is checked by the test suite
(tests/benchmarks/test_benchmarks_smoke.py); its numbers mean nothing. ``synthetic --smoke``: 2000 x 32 vectors,
50 queries; ``scifact --smoke``: 300 SciFact abstracts and 20 test claims, 32 tokens each, embeddings in a
temporary folder.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

import numpy as np


def subtopic_centres(dim: int, seed: int, topics: int = 100, subtopics: int = 100, spread: float = 0.8
                     ) -> np.ndarray:
    """[topics * subtopics, dim] centres: topic centre ~ N(0, I) plus spread * N(0, I) per sub-topic."""
    rng = np.random.default_rng(seed)
    topic_centres = rng.standard_normal((topics, dim), dtype=np.float32)
    return (np.repeat(topic_centres, subtopics, axis=0)
            + spread * rng.standard_normal((topics * subtopics, dim), dtype=np.float32))


def clustered_vectors(centres: np.ndarray, size: int, seed: int, spread: float = 0.8, chunk: int = 100_000
                      ) -> np.ndarray:
    """[size, dim] float32 unit vectors: a uniformly chosen centre + spread * N(0, I), L2-normalised."""
    rng = np.random.default_rng(seed)
    out = np.empty((size, centres.shape[1]), dtype=np.float32)
    for start in range(0, size, chunk):
        stop = min(size, start + chunk)
        which = rng.integers(0, len(centres), stop - start)
        block = centres[which] + spread * rng.standard_normal((stop - start, centres.shape[1]), dtype=np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def scifact_vectors(embeddings_dir: Path, shards: int, batch_size: int, max_length: int = 256,
                    corpus_size: int | None = None, max_eval_queries: int | None = None, cache_dir: str | None = None,
                    max_train_queries: int | None = None):
    """(doc ids, doc vectors [N, H], query ids, query vectors [Q, H], qrels, encode docs/s or None)."""
    from kd.retrieval.data.sources import load_retrieval_data
    from kd.retrieval.metrics.corpus_shards import corpus_fingerprint, encode_shard, load_shards, shard_path
    from kd.retrieval.models.bi_encoder import BiEncoder
    from kd.paths import shared_path

    splits = load_retrieval_data("scifact", shared_path("data/scifact/scifact.zip"), train_split="train",
                                 eval_split="test", corpus_size=corpus_size, max_eval_queries=max_eval_queries,
                                 max_train_queries=max_train_queries,
                                 cache_dir=cache_dir or os.path.expanduser("~/.cache/kd"))
    encoder = BiEncoder("packaged:minilm", max_length=max_length)
    fingerprint = corpus_fingerprint(splits.corpus, encoder.name_or_path)
    docs_per_s = None
    todo = [i for i in range(shards) if not shard_path(embeddings_dir, i, shards).is_file()]
    if todo:
        start = time.perf_counter()
        for i in todo:
            encode_shard(encoder, splits.corpus, i, shards, embeddings_dir, batch_size, fingerprint)
        seconds = time.perf_counter() - start
        if len(todo) == shards:
            docs_per_s = len(splits.corpus) / seconds
    doc_vectors = load_shards(embeddings_dir, splits.corpus, fingerprint).numpy()
    judged = [q for q in splits.eval_qrels if q in splits.eval_queries]
    query_vectors = encoder.encode([splits.eval_queries[q] for q in judged], batch_size=batch_size).numpy()
    return list(splits.corpus), doc_vectors, judged, query_vectors, splits.eval_qrels, docs_per_s


def run(kind: str, specs: dict, docs: np.ndarray, queries: np.ndarray, k: int, exact_rows, doc_ids=None,
        query_ids=None, qrels=None) -> dict:
    from kd.retrieval.metrics.dense_search import IndexSpec, build_index, index_memory_bytes, recall_vs_exact
    from kd.retrieval.metrics.retrieval import retrieval_metrics

    spec = IndexSpec(kind=kind, **specs.get(kind, {}))
    start = time.perf_counter()
    index = build_index(docs, spec)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    _, rows = index.search(queries, k)
    search_s = time.perf_counter() - start
    row = {"index": kind, "spec": spec.factory_string(len(docs)) + _knobs(spec), "build_s": build_s,
           "search_s": search_s, "qps": len(queries) / search_s, "memory_mib": index_memory_bytes(index) / 2**20,
           "rows": rows}
    if exact_rows is not None:
        row["recall@10"] = recall_vs_exact(rows, exact_rows, 10)
        row["recall@100"] = recall_vs_exact(rows, exact_rows, 100)
    if qrels is not None:
        run_ = {q: [doc_ids[j] for j in r if j >= 0] for q, r in zip(query_ids, rows)}
        row["ndcg@10"] = retrieval_metrics(run_, qrels)["ndcg@10"]
    del index
    gc.collect()
    return row


def _knobs(spec) -> str:
    if spec.kind in ("ivf_flat", "ivf_pq"):
        return f" nprobe={spec.nprobe}"
    if spec.kind == "hnsw":
        return f" efC={spec.ef_construction} efS={spec.ef_search}"
    return ""


def table(rows: list[dict]) -> str:
    columns = ["index", "spec", "build_s", "search_s", "qps", "memory_mib", "recall@10", "recall@100", "ndcg@10"]
    columns = [c for c in columns if any(c in r for r in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(f"{v:.4f}" if c.startswith(("recall", "ndcg")) else f"{v:.1f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=["scifact", "synthetic"])
    parser.add_argument("--kinds", default="flat,ivf_flat,ivf_pq,hnsw")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nlist", default="auto")
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--pq-m", type=int, default=48)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=2, help="scifact: corpus encoded in this many shards")
    parser.add_argument("--embeddings-dir", default=os.path.expanduser("~/.cache/kd/embeddings/scifact-minilm"))
    parser.add_argument("--smoke", action="store_true", help="seconds-long check of every index kind (numbers mean nothing)")
    args = parser.parse_args()
    scifact_options: dict = {}
    if args.smoke:
        import tempfile

        tmp = tempfile.mkdtemp(prefix="kd-index-smoke-")
        args.size, args.dim, args.queries, args.pq_m = 2000, 32, 50, 8
        args.hnsw_m, args.ef_construction, args.ef_search = 8, 16, 32
        args.embeddings_dir = f"{tmp}/embeddings"
        scifact_options = {"max_length": 32, "corpus_size": 300, "max_eval_queries": 20,
                           "max_train_queries": 1, "cache_dir": f"{tmp}/cache"}

    import faiss

    nlist = args.nlist if args.nlist == "auto" else int(args.nlist)
    ivf = {"nlist": nlist, "nprobe": args.nprobe, "train_size": args.train_size, "seed": args.seed}
    specs = {"ivf_flat": ivf, "ivf_pq": ivf | {"pq_m": args.pq_m},
             "hnsw": {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction, "ef_search": args.ef_search}}
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    extra = {}
    if args.corpus == "scifact":
        doc_ids, docs, query_ids, queries, qrels, docs_per_s = scifact_vectors(Path(args.embeddings_dir), args.shards,
                                                                               64, **scifact_options)
        extra = {"doc_ids": doc_ids, "query_ids": query_ids, "qrels": qrels}
        print(f"SciFact: {len(docs)} docs, {len(queries)} judged test claims"
              + (f", encoded at {docs_per_s:.1f} docs/s ({args.shards} shards, one after another)" if docs_per_s else ""))
    else:
        start = time.perf_counter()
        centres = subtopic_centres(args.dim, args.seed)
        docs = clustered_vectors(centres, args.size, args.seed + 1)
        queries = clustered_vectors(centres, args.queries, args.seed + 2)
        print(f"synthetic: {len(docs)} x {args.dim} clustered vectors, {len(queries)} queries, "
              f"generated in {time.perf_counter() - start:.1f} s")
    k = 100
    rows = []
    exact = None
    for kind in args.kinds.split(","):
        row = run(kind, specs, docs, queries, k, exact, **extra)
        if kind == "flat":
            exact = row["rows"]
            row["recall@10"], row["recall@100"] = 1.0, 1.0
        rows.append(row)
        print({key: (round(v, 4) if isinstance(v, float) else v) for key, v in row.items() if key != "rows"}, flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
