"""The teacher score cache: each pair scored once, persisted atomically, keyed, rebuilt when corrupt."""

import lightning as L
import torch

from kd.retrieval.data.datamodule import RetrievalDataModule
from kd.retrieval.distillation_module import RetrievalDistillationModule
from kd.retrieval.losses import DistillationLoss
from kd.retrieval.models.bi_encoder import BiEncoder
from kd.retrieval.models.cross_encoder import CrossEncoder
from kd.retrieval.teacher_cache import TeacherScoreCache, score_with_cache


class CountingTeacher:
    def __init__(self):
        self.pairs_scored = 0

    def score(self, queries, documents, batch_size=64):
        self.pairs_scored += len(queries)
        return torch.tensor([len(q) / (len(q) + len(d)) for q, d in zip(queries, documents)])


def _cache(tmp_path, teacher="hub:x", precision="fp32", max_length=128):
    return TeacherScoreCache(tmp_path, teacher, precision, max_length)


def test_each_pair_is_scored_once_and_survives_a_restart(tmp_path):
    teacher = CountingTeacher()
    cache = _cache(tmp_path)
    queries, docs = ["a", "bb", "a"], ["x", "yy", "x"]
    first = score_with_cache(cache, teacher, queries, docs)
    assert teacher.pairs_scored == 2  # ("a", "x") appears twice but is scored once
    second = score_with_cache(cache, teacher, queries, docs)
    assert teacher.pairs_scored == 2 and torch.equal(first, second)
    cache.save()
    reloaded = _cache(tmp_path)
    assert len(reloaded) == 2
    assert torch.equal(score_with_cache(reloaded, teacher, queries, docs), first) and teacher.pairs_scored == 2


def test_key_changes_with_precision_length_and_weights(tmp_path):
    folder = tmp_path / "teacher"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    base = _cache(tmp_path, str(folder)).key
    assert _cache(tmp_path, str(folder), precision="bf16").key != base
    assert _cache(tmp_path, str(folder), max_length=64).key != base
    (folder / "model.safetensors").write_bytes(b"new weights")
    assert _cache(tmp_path, str(folder)).key != base


def test_corrupt_file_is_reported_and_rebuilt(tmp_path, caplog):
    cache = _cache(tmp_path)
    cache.add([b"k" * 12], [0.5])
    cache.save()
    cache.path.write_bytes(cache.path.read_bytes()[:40])  # torn write
    rebuilt = _cache(tmp_path)
    assert rebuilt.rebuilt_corrupt and len(rebuilt) == 0
    assert "corrupt" in caplog.text and cache.path.with_suffix(".corrupt").is_file()


def test_training_scores_every_pair_once_and_matches_uncached_scores(tiny_model_dir, tiny_splits, tmp_path):
    L.seed_everything(0, verbose=False)
    student = BiEncoder(str(tiny_model_dir), max_length=32)
    teacher = CrossEncoder(str(tiny_model_dir), max_length=48)
    cache = TeacherScoreCache(tmp_path, str(tiny_model_dir), "fp32", 48)
    datamodule = RetrievalDataModule(tiny_splits, student, teacher, num_negatives=2, mined_negatives=2,
                                     mining="bm25", teacher_filter=False, batch_size=4, seed=0, score_cache=cache)
    module = RetrievalDistillationModule(student, teacher, DistillationLoss(), score_cache=cache)
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule)
    # fixed (mined) negatives: epochs 2 and 3 find every pair in the cache
    assert cache.misses == len(cache) > 0
    assert cache.hits == module.pairs_seen - cache.misses == 2 * cache.misses
    assert TeacherScoreCache(tmp_path, str(tiny_model_dir), "fp32", 48).scores == cache.scores  # saved

    batch = next(iter(datamodule.train_dataloader()))
    cached = module.teacher_scores(batch)
    with torch.no_grad():
        direct = torch.sigmoid(teacher(**teacher.tokenize(*batch["pair_texts"]))).view_as(cached)
    assert torch.allclose(cached, direct, atol=1e-5)


def test_precompute_fills_the_cache_then_training_scores_nothing_new(tiny_model_dir, tiny_beir_dir, tmp_path):
    from hydra import compose, initialize_config_dir

    import kd.config  # noqa: F401
    from kd.cli.score_teacher import fill_cache
    from kd.retrieval.run import run_training
    from tests.cli.test_cli_train import CONF, tiny_overrides

    overrides = tiny_overrides(tiny_model_dir, tiny_beir_dir, tmp_path / "out", tmp_path / "cache") + [
        "trainer.max_epochs=1", "eval_before=false"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    first = fill_cache(cfg)
    assert first["scored"] > 0
    assert fill_cache(cfg)["scored"] == 0  # all cached now
    results = run_training(cfg)
    assert results["resources"]["teacher_cache"]["misses"] == 0


def test_shards_of_every_process_merge_into_the_cache_or_nothing_merges(tmp_path):
    import pytest

    cache = _cache(tmp_path)
    cache.add([b"a" * 12], [0.1])
    cache.write_shard([b"b" * 12, b"a" * 12], [0.2, 0.1], rank=0, world_size=2)
    with pytest.raises(FileNotFoundError, match="shard-001-of-002"):
        cache.merge_shards(2)  # rank 1 never wrote: nothing is merged
    assert len(cache) == 1 and not cache.path.exists()
    cache.write_shard([b"c" * 12], [0.3], rank=1, world_size=2)
    assert cache.merge_shards(2) == 2
    reloaded = _cache(tmp_path)
    assert reloaded.scores == pytest.approx({b"a" * 12: 0.1, b"b" * 12: 0.2, b"c" * 12: 0.3})  # float32 on disk
    assert not list(cache.path.parent.glob("*.shard-*"))
