"""End to end on tiny data: kd-generate-queries writes and filters queries for 2 documents (a fake LLM, BM25 as
the filter), then kd-train mixes them into the labelled queries and distils with teacher scores on both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

import kd.config  # noqa: F401
from kd.retrieval.data.beir import load_corpus
from kd.retrieval.run import run_training
from kd.retrieval.synthetic.generate import QUERIES_FILE, run_generation
from kd.retrieval.teacher_cache import pair_key

from test_synthetic_generate import FakeLLM, compose_cfg

CONF = str(Path(__file__).resolve().parents[3] / "conf")


def test_generate_filter_then_train_on_labelled_plus_synthetic(tiny_beir_dir, tiny_model_dir, tmp_path):
    gen = compose_cfg(tiny_beir_dir, tmp_path / "gen", tmp_path / "cache", "doc_ids=[d5,d6]")
    manifest = run_generation(gen, llm=FakeLLM())
    assert (manifest["counts"]["generated"], manifest["counts"]["kept"]) == (6, 4)
    synthetic = [json.loads(line) for line in (tmp_path / "gen" / QUERIES_FILE).read_text().splitlines()]

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "data=beir", f"data.path={tiny_beir_dir}", "data.num_negatives=2", "data.mined_negatives=1",
            "data.batch_size=4", "data.dev_fraction=0", f"data.synthetic={tmp_path / 'gen' / QUERIES_FILE}",
            f"student.name_or_path={tiny_model_dir}", "student.max_length=32", "teacher=bm25",
            "loss.teacher_temperature=1.0", "logger=none", "trainer=cpu", "trainer.max_epochs=1", "checkpoint=none",
            "save_student=false", "eval_before=false", f"paths.output_dir={tmp_path / 'out'}",
            f"paths.cache_dir={tmp_path / 'cache'}"])
    results = run_training(cfg)
    data = results["data"]
    assert data["train_queries"] == 8 + 4 and data["train_examples"] == 12
    assert data["synthetic"]["used"] == 4 and data["synthetic"]["dropped"]["test_positive"] == 0
    assert 0 <= results["after"]["ndcg@10"] <= 1
    # the teacher scored the synthetic queries against their documents like the labelled ones
    corpus = load_corpus(Path(tiny_beir_dir) / "corpus.jsonl")
    (cache_file,) = (tmp_path / "cache" / "teacher_scores").glob("*.npz")
    with np.load(cache_file) as arrays:
        scores = dict(zip(arrays["keys"].tolist(), arrays["values"].tolist()))
    for query in synthetic:
        assert scores[pair_key(query["text"], corpus[query["doc_id"]])] > 0  # BM25 of the positive
    assert scores[pair_key("apple orchards harvest", corpus["d1"])] > 0  # a labelled pair, scored too
