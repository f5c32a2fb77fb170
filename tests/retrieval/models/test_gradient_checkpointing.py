"""student.gradient_checkpointing: the same gradients as without it (dropout masks replayed), less memory."""

import torch

from kd.retrieval.losses import DistillationLoss
from kd.retrieval.models.bi_encoder import BiEncoder

QUERIES = ["apple orchards harvest", "volcano lava eruption", "chess opening gambit"]
DOCS = ["apple orchards bring a large harvest in autumn", "a volcano erupts and lava flows down the mountain",
        "the queen gambit is a famous chess opening", "glacier ice is melting faster every summer",
        "the soloist played a violin concerto", "yeast makes the bread dough rise"]


def _gradients(student: BiEncoder, seed: int) -> dict[str, torch.Tensor]:
    student.train()  # dropout on
    student.zero_grad()
    torch.manual_seed(seed)
    q = student.embed(student.tokenize(QUERIES))
    d = student.embed(student.tokenize(DOCS)).view(3, 2, -1)
    DistillationLoss(kl_gate=False)(q, d, torch.tensor([[0.9, 0.1], [0.8, 0.3], [0.7, 0.6]])).total.backward()
    return {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}


def test_checkpointed_gradients_equal_the_plain_ones(tiny_model_dir):
    plain = BiEncoder(str(tiny_model_dir), max_length=32)
    checkpointed = BiEncoder(str(tiny_model_dir), max_length=32, gradient_checkpointing=True)
    assert checkpointed.model.encoder.layer[0].gradient_checkpointing and not plain.gradient_checkpointing
    expected, got = _gradients(plain, seed=3), _gradients(checkpointed, seed=3)
    other_seed = _gradients(plain, seed=4)
    assert expected.keys() == got.keys() and len(got) > 30
    assert max(float((expected[k] - other_seed[k]).abs().max()) for k in expected) > 1e-4  # dropout matters
    assert max(float((expected[k] - got[k]).abs().max()) for k in expected) < 1e-6
    with torch.no_grad():  # and the same embeddings in eval mode
        assert torch.equal(plain.encode(DOCS), checkpointed.encode(DOCS))
