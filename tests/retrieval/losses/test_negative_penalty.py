import pytest
import torch

from kd.retrieval.losses import NegativeHingePenalty


def test_hand_computed_value():
    penalty = NegativeHingePenalty(margin=0.3)
    assert penalty(torch.tensor([[0.5, 0.1], [0.4, -0.2]])).item() == pytest.approx((0.2 + 0.1) / 4, abs=1e-6)


def test_mask_excludes_likely_false_negatives():
    penalty = NegativeHingePenalty(margin=0.3)
    scores = torch.tensor([[0.9, 0.5]])
    assert penalty(scores, torch.tensor([[False, True]])).item() == pytest.approx(0.2, abs=1e-6)
    assert penalty(scores, torch.tensor([[False, False]])).item() == 0.0


def test_zero_below_margin_and_gradient_above():
    penalty = NegativeHingePenalty(margin=0.3)
    scores = torch.tensor([[0.1, 0.6]], requires_grad=True)
    penalty(scores).backward()
    assert scores.grad.tolist() == [[0.0, 0.5]]


def test_bad_margin_and_shape():
    with pytest.raises(ValueError, match="margin"):
        NegativeHingePenalty(margin=2.0)
    with pytest.raises(ValueError, match="negative_scores"):
        NegativeHingePenalty()(torch.zeros(4))
