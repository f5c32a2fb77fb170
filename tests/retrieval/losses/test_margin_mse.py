import pytest
import torch

from kd.retrieval.losses.distillation import DistillationLoss
from kd.retrieval.losses.margin_mse import MarginMSELoss


def test_margin_mse_is_zero_when_student_margins_equal_calibrated_teacher_margins():
    teacher = torch.tensor([[2.0, 1.0, -1.0]])
    student = teacher * 0.05 / 1.0  # cos margins / 0.05 == teacher margins / 1.0
    assert MarginMSELoss(teacher_temperature=1.0, student_temperature=0.05)(student, teacher).item() == pytest.approx(0, abs=1e-10)


def test_margin_mse_value_by_hand():
    student = torch.tensor([[0.5, 0.4, 0.1]])  # margins / 0.1: [1, 4]
    teacher = torch.tensor([[3.0, 1.0, 0.0]])  # margins / 1: [2, 3]
    expected = ((1 - 2) ** 2 + (4 - 3) ** 2) / 2
    assert MarginMSELoss(1.0, 0.1)(student, teacher).item() == pytest.approx(expected)


def test_margin_mse_mask_drops_a_negative_and_gradient_widens_a_too_small_margin():
    student = torch.tensor([[0.5, 0.49, 0.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0, 0.9]])
    mask = torch.tensor([[True, True, False]])
    loss = MarginMSELoss(1.0, 0.05)(student, teacher, mask)
    assert loss.item() == pytest.approx(((0.01 / 0.05) - 1.0) ** 2)
    loss.backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]  # descending raises the positive, lowers the negative
    assert student.grad[0, 2] == 0


def test_margin_mse_refuses_wrong_shapes_naming_the_tensor():
    with pytest.raises(ValueError, match="teacher_scores"):
        MarginMSELoss()(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="negative"):
        MarginMSELoss()(torch.zeros(2, 1), torch.zeros(2, 1))


def test_distillation_loss_adds_weighted_margin_mse_and_reports_it():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)
    t = torch.randn(3, 4)
    base = DistillationLoss(kl_weight=0, contrastive_weight=1, penalty_weight=0, teacher_temperature=1.0,
                            false_negative_margin=None)(q, d, t)
    both = DistillationLoss(kl_weight=0, contrastive_weight=1, penalty_weight=0, teacher_temperature=1.0,
                            false_negative_margin=None, margin_mse_weight=0.5)(q, d, t)
    assert both.margin_mse is not None and both.margin_mse.item() > 0
    assert both.total.item() == pytest.approx(base.total.item() + 0.5 * both.margin_mse.item(), rel=1e-6)
    assert "margin_mse" in both.as_dict() and "margin_mse" not in base.as_dict()
