"""kd-eval in corpus shards: shard jobs write embeddings, a search job over them gives the one-job metrics."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import kd.config  # noqa: F401
from kd.errors import ConfigError

CONF = str(Path(__file__).resolve().parents[3] / "conf")


def _eval_cfg(tiny_model_dir, tiny_beir_dir, tmp_path, *extra):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="eval", overrides=[
            "data=beir", f"data.path={tiny_beir_dir}", f"student.name_or_path={tiny_model_dir}",
            "student.max_length=32", f"paths.cache_dir={tmp_path / 'cache'}", *extra])


def test_two_shard_jobs_then_search_equal_one_job(tiny_model_dir, tiny_beir_dir, tmp_path):
    from kd.cli.evaluate import run_evaluation

    whole = next(iter(run_evaluation(_eval_cfg(tiny_model_dir, tiny_beir_dir, tmp_path)).values()))
    emb = tmp_path / "emb"
    for shard in ("1/2", "0/2"):
        assert run_evaluation(_eval_cfg(tiny_model_dir, tiny_beir_dir, tmp_path, f"shard={shard}",
                                        f"embeddings_dir={emb}")) == {}
    assert sorted(p.name for p in emb.iterdir()) == ["shard-00000-of-00002.npz", "shard-00001-of-00002.npz"]
    sharded = next(iter(run_evaluation(_eval_cfg(tiny_model_dir, tiny_beir_dir, tmp_path,
                                                 f"embeddings_dir={emb}")).values()))
    assert sharded == pytest.approx(whole, abs=1e-6)
    hnsw = next(iter(run_evaluation(_eval_cfg(tiny_model_dir, tiny_beir_dir, tmp_path, f"embeddings_dir={emb}",
                                              "index=hnsw")).values()))
    assert hnsw == pytest.approx(whole, abs=1e-6)  # 32 documents: the HNSW graph finds them all

    with pytest.raises(ConfigError, match="shard=i/n needs embeddings_dir"):
        run_evaluation(_eval_cfg(tiny_model_dir, tiny_beir_dir, tmp_path, "shard=0/2"))
