import json

import pytest

from kd.retrieval.dev_split import carve_dev_split
from kd.retrieval.models.cross_encoder import CrossEncoder
from kd.retrieval.teacher_training import ensemble_groups, train_teacher


def _ensemble(model_dir):
    return {"members": {"bm25": {"kind": "bm25"},
                        "tiny": {"kind": "bi_encoder", "name_or_path": str(model_dir), "max_length": 32}},
            "weights": "auto", "method": "auto", "depth": 10}


def test_ensemble_groups_put_the_positive_first_with_calibrated_soft_targets(tiny_splits, tiny_model_dir, tmp_path):
    train, dev = carve_dev_split(tiny_splits, 0.3, seed=0)
    groups, targets, info = ensemble_groups(train, _ensemble(tiny_model_dir), dev, tmp_path, seed=0, candidates=4)
    assert len(groups) == len(train.train_qrels) == 3
    for (query, docs), row in zip(groups, targets):
        assert docs[0] in train.train_qrels[query] and len(docs) == len(row) == 4
        assert not set(docs[1:]) & set(train.train_qrels[query])
        # BM25 dominates this lexical toy data: the fusion scores the topical positive above the rest
        assert row[0] == max(row)
    assert info["temperature"] > 0 and info["fusion"]["dev"]["ndcg@10"] == pytest.approx(1.0)


def test_cross_encoder_distilled_from_the_ensemble_keeps_its_best_dev_epoch(tiny_splits, tiny_model_dir, tmp_path):
    train, dev = carve_dev_split(tiny_splits, 0.3, seed=0)
    folder = train_teacher(train, tmp_path / "ce", base_model=str(tiny_model_dir), max_length=48, epochs=2,
                           lr=1e-3, batch_groups=2, dev=dev, targets="ensemble", ensemble=_ensemble(tiny_model_dir),
                           candidates=4, cache_root=tmp_path)
    meta = json.loads((folder / "kd_teacher.json").read_text())
    assert meta["targets"] == "ensemble" and meta["group_size"] == 4 and len(meta["dev_ndcg@10_per_epoch"]) == 2
    history = meta["dev_ndcg@10_per_epoch"]
    assert meta["kept_epoch"] == history.index(max(history))
    # the saved weights are the kept epoch's: they reproduce its dev score
    from kd.retrieval.teacher_training import DevSelection

    assert DevSelection(train.corpus, dev).dev_ndcg(CrossEncoder(str(folder), max_length=48)) == pytest.approx(
        max(history), abs=1e-4)  # the history is rounded to 4 digits


def test_unknown_cross_encoder_targets_are_refused(tiny_splits, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="targets must be labels or ensemble"):
        train_teacher(tiny_splits, tmp_path / "x", base_model=str(tiny_model_dir), targets="vibes")
