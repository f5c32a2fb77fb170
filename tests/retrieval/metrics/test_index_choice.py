"""FAISS index choice by config: every conf/index option builds, approximate indexes find the exact neighbours."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from kd.retrieval.metrics.dense_search import IndexSpec, build_index, recall_vs_exact, search

CONF_INDEX = Path(__file__).resolve().parents[3] / "conf" / "index"


def _clustered(size, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    x = centres[rng.integers(0, 20, size)] + 0.5 * rng.standard_normal((size, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def one_faiss_thread():
    """FAISS on one thread: sharing torch's 2-thread OpenMP pool on a busy CPU makes k-means spin for seconds."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("option", sorted(p.stem for p in CONF_INDEX.glob("*.yaml")))
def test_every_index_config_finds_the_exact_neighbours(option, one_faiss_thread):
    config = yaml.safe_load((CONF_INDEX / f"{option}.yaml").read_text())
    if option == "ivf_pq":
        config.update(pq_m=8, pq_nbits=4)  # 8 must divide the 32 dims; 4 bits: 16 centroids train fast on 2000 points
    docs, queries = _clustered(2000), _clustered(50, seed=1)
    exact = build_index(docs).search(queries, 10)[1]
    index = build_index(docs, config)
    assert index.ntotal == 2000
    assert type(index).__name__ == {"flat": "IndexFlat", "ivf_flat": "IndexIVFFlat", "ivf_pq": "IndexIVFPQ",
                                    "hnsw": "IndexHNSWFlat"}[option]
    recall = recall_vs_exact(index.search(queries, 10)[1], exact, 10)
    assert recall >= (0.3 if option == "ivf_pq" else 0.9), recall  # 4-bit PQ scores are coarse; chance is 0.005
    run, _ = search(index, queries[:2], [f"d{i}" for i in range(2000)], ["a", "b"], k=5)
    assert len(run["a"]) == 5


def test_auto_lists_grow_with_the_corpus_but_keep_39_points_per_list():
    spec = IndexSpec(kind="ivf_flat")
    assert spec.lists_for(1_000_000) == 4000
    assert spec.lists_for(5183) == 5183 // 39
    assert spec.factory_string(1_000_000) == "IVF4000,Flat"


def test_recall_vs_exact_counts_shared_ids():
    exact = np.array([[1, 2, 3, 4]])
    assert recall_vs_exact(np.array([[4, 3, 9, 8]]), exact, 4) == 0.5
    assert recall_vs_exact(np.array([[1, -1, -1, -1]]), exact, 2) == 0.5


def test_bad_index_options_are_named():
    with pytest.raises(ValueError, match="index.kind must be one of flat, ivf_flat, ivf_pq, hnsw, got 'ivf'"):
        IndexSpec.from_config({"kind": "ivf"})
    with pytest.raises(ValueError, match="unknown index option.*nprob\\b"):
        IndexSpec.from_config({"kind": "ivf_flat", "nprob": 3})
    with pytest.raises(ValueError, match="pq_m=10 must divide the embedding size 32"):
        build_index(_clustered(2000), {"kind": "ivf_pq", "pq_m": 10})
