import pytest
import torch

from kd.retrieval.models.bi_encoder import BiEncoder, mean_pool


def test_mean_pool_ignores_padding():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(states, mask).tolist() == [[2.0, 3.0]]
    with pytest.raises(ValueError, match="mean_pool"):
        mean_pool(states[0], mask)


def test_embeddings_are_unit_norm_and_encode_keeps_input_order(tiny_model_dir):
    encoder = BiEncoder(str(tiny_model_dir), max_length=32)
    texts = ["short", "a much much longer text than the others here", "medium length text"]
    vectors = encoder.encode(texts, batch_size=2)
    assert vectors.shape == (3, encoder.dim)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    one_by_one = torch.cat([encoder.encode([t]) for t in texts])
    assert torch.allclose(vectors, one_by_one, atol=1e-5)


def test_identical_texts_in_one_batch_get_identical_embeddings(tiny_model_dir):
    encoder = BiEncoder(str(tiny_model_dir), max_length=32)
    same = encoder.encode(["identical text", "identical text"])
    assert torch.allclose(same[0], same[1], atol=1e-6)
