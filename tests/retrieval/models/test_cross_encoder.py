import torch

from kd.retrieval.models.cross_encoder import CrossEncoder


def test_scores_are_probabilities_in_input_order(tiny_model_dir):
    teacher = CrossEncoder(str(tiny_model_dir), max_length=32)
    queries = ["q one", "q two is longer than the first", "q3"]
    docs = ["doc a", "doc b with more words in it", "c"]
    scores = teacher.score(queries, docs, batch_size=2)
    assert scores.shape == (3,)
    assert ((scores > 0) & (scores < 1)).all()
    single = torch.cat([teacher.score([q], [d]) for q, d in zip(queries, docs)])
    assert torch.allclose(scores, single, atol=1e-5)


def test_freeze_turns_off_gradients_and_dropout(tiny_model_dir):
    teacher = CrossEncoder(str(tiny_model_dir), max_length=32).freeze()
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    dropouts = [m for m in teacher.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and not any(m.training for m in dropouts)
    tokens = teacher.tokenizer(["query"], ["document"], return_tensors="pt")
    # the raw model (not score(), which switches to eval itself) gives the same logits twice: no dropout noise
    assert torch.equal(teacher.model(**tokens).logits, teacher.model(**tokens).logits)


def test_save_and_reload_keeps_the_head(tiny_model_dir, tmp_path):
    teacher = CrossEncoder(str(tiny_model_dir), max_length=32)
    before = teacher.score(["query"], ["document"])
    teacher.save(tmp_path / "ce")
    after = CrossEncoder(str(tmp_path / "ce"), max_length=32).score(["query"], ["document"])
    assert torch.allclose(before, after, atol=1e-6)
