import math

import pytest
import torch

from kd.retrieval.losses import DistillKLDivergenceLoss


def test_hand_computed_value():
    # student logits [1, 0], teacher logits [0, 1]: p_s = [s, 1-s], p_t = [1-s, s] with s = sigmoid(1)
    # KL = (2s - 1) * ln(s / (1 - s)) = (2s - 1) * 1
    loss = DistillKLDivergenceLoss(teacher_temperature=0.5, student_temperature=0.5)
    value = loss(torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 0.5]]))
    s = 1 / (1 + math.exp(-1))
    assert value.item() == pytest.approx(2 * s - 1, abs=1e-6)


def test_zero_when_distributions_match_and_positive_otherwise():
    loss = DistillKLDivergenceLoss(0.05, 0.05)
    scores = torch.tensor([[0.9, 0.2, 0.1], [0.3, 0.6, 0.5]])
    assert loss(scores, scores).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(scores, scores.flip(-1)).item() > 0.1


def test_teacher_temperature_sharpens():
    student = torch.tensor([[0.5, 0.5]])
    teacher = torch.tensor([[0.9, 0.1]])
    flat = DistillKLDivergenceLoss(teacher_temperature=1.0)(student, teacher)
    sharp = DistillKLDivergenceLoss(teacher_temperature=0.05)(student, teacher)
    # at T=1 the teacher's softmax over [0.9, 0.1] is [0.69, 0.31]: close to the student's uniform one
    p = 1 / (1 + math.exp(-0.8))
    assert flat.item() == pytest.approx(p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p)), abs=1e-5)
    # at T=0.05 it is almost one-hot: KL(one-hot || uniform) = ln 2
    assert sharp.item() == pytest.approx(math.log(2), abs=1e-4)


def test_mask_drops_candidates():
    loss = DistillKLDivergenceLoss(0.5, 0.5)
    student = torch.tensor([[0.5, 0.0, 9.0]])
    teacher = torch.tensor([[0.0, 0.5, -9.0]])
    mask = torch.tensor([[True, True, False]])
    s = 1 / (1 + math.exp(-1))
    assert loss(student, teacher, mask).item() == pytest.approx(2 * s - 1, abs=1e-6)


def test_gradient_reaches_student_only():
    student = torch.tensor([[0.2, 0.4]], requires_grad=True)
    teacher = torch.tensor([[0.9, 0.1]], requires_grad=True)
    DistillKLDivergenceLoss()(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_shape_errors():
    loss = DistillKLDivergenceLoss()
    with pytest.raises(ValueError, match="teacher_scores"):
        loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="student_scores"):
        loss(torch.zeros(3), torch.zeros(3))
