import math

import pytest
import torch

from kd.retrieval.losses import InfoNCELoss


def test_hand_computed_value():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    value = InfoNCELoss(temperature=1.0)(scores, torch.tensor([0, 1]))
    assert value.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_temperature_scales_logits():
    scores = torch.tensor([[0.5, 0.0, 0.25]])
    value = InfoNCELoss(temperature=0.5)(scores, torch.tensor([0]))
    expected = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.0) + math.exp(0.5)))
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_exclude_removes_documents_but_never_the_positive():
    scores = torch.tensor([[0.2, 0.9, 0.1]])
    positive = torch.tensor([0])
    loss = InfoNCELoss(temperature=1.0)
    full = loss(scores, positive)
    exclude = torch.tensor([[True, True, False]])  # excluding the positive itself must be ignored
    value = loss(scores, positive, exclude)
    expected = -math.log(math.exp(0.2) / (math.exp(0.2) + math.exp(0.1)))
    assert value.item() == pytest.approx(expected, abs=1e-6)
    assert value < full


def test_shape_errors():
    loss = InfoNCELoss()
    with pytest.raises(ValueError, match="positive_index"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="exclude"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]), torch.zeros(2, 3, dtype=torch.bool))
