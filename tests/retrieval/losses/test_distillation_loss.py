import pytest
import torch

from kd.retrieval.losses import DistillationLoss, DistillKLDivergenceLoss, InfoNCELoss, NegativeHingePenalty, false_negative_mask


def _batch(seed=0, batch=3, candidates=4, hidden=8):
    generator = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(batch, hidden, generator=generator), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(batch, candidates, hidden, generator=generator), dim=-1)
    t = torch.rand(batch, candidates, generator=generator)
    t[:, 0] = 0.99  # the teacher prefers the labelled positive
    return q, d, t


def test_total_is_the_weighted_sum_of_the_terms():
    q, d, t = _batch()
    terms = DistillationLoss(kl_weight=0.7, contrastive_weight=0.2, penalty_weight=0.5)(q, d, t)
    assert terms.total.item() == pytest.approx(0.7 * terms.kl.item() + 0.2 * terms.contrastive.item()
                                               + 0.5 * terms.penalty.item(), rel=1e-6)
    assert terms.kl > 0 and terms.contrastive > 0


def test_terms_match_the_unit_losses():
    q, d, t = _batch()
    loss = DistillationLoss(false_negative_margin=None, penalty_margin=0.0)
    terms = loss(q, d, t)
    own = torch.einsum("bh,bch->bc", q, d)
    assert terms.kl.item() == pytest.approx(DistillKLDivergenceLoss()(own, t).item(), rel=1e-6)
    all_scores = q @ d.reshape(-1, d.shape[-1]).T
    expected_nce = InfoNCELoss()(all_scores, torch.arange(3) * 4)
    assert terms.contrastive.item() == pytest.approx(expected_nce.item(), rel=1e-6)
    assert terms.penalty.item() == pytest.approx(NegativeHingePenalty(0.0)(own[:, 1:]).item(), rel=1e-6)


def test_zero_weight_switches_a_term_off():
    q, d, t = _batch()
    terms = DistillationLoss(kl_weight=0.0, contrastive_weight=1.0, penalty_weight=0.0)(q, d, t)
    assert terms.kl.item() == 0.0 and terms.penalty.item() == 0.0
    assert terms.total.item() == pytest.approx(terms.contrastive.item())


def test_false_negative_mask():
    teacher = torch.tensor([[0.8, 0.9, 0.1, 0.75]])
    assert false_negative_mask(teacher, margin=0.0).tolist() == [[False, True, False, False]]
    assert false_negative_mask(teacher, margin=0.1).tolist() == [[False, True, False, True]]


def test_teacher_flagged_negative_leaves_the_contrastive_denominator():
    q, d, t = _batch()
    d = d.clone()
    d[0, 1] = q[0]  # candidate 1 of query 0 looks identical to the query: a strong competitor
    t_flagged = t.clone()
    t_flagged[0, 1] = 0.995  # ... which the teacher says is relevant: a false negative
    loss = DistillationLoss(kl_weight=0.0, penalty_weight=0.0)
    assert loss(q, d, t_flagged).contrastive < loss(q, d, t).contrastive


def test_in_batch_exclude_is_applied():
    q, d, t = _batch()
    loss = DistillationLoss(kl_weight=0.0, penalty_weight=0.0)
    exclude = torch.zeros(3, 12, dtype=torch.bool)
    exclude[0, 4:] = True  # query 0 ignores every other query's documents
    assert loss(q, d, t, exclude).contrastive < loss(q, d, t).contrastive


def test_shape_checks_and_negative_weights():
    q, d, t = _batch()
    with pytest.raises(ValueError, match="shape mismatch"):
        DistillationLoss()(q, d, t[:, :2])
    with pytest.raises(ValueError, match="kl_weight"):
        DistillationLoss(kl_weight=-1.0)


def test_kl_gate_skips_queries_where_the_teacher_contradicts_the_label():
    q, d, t = _batch()
    t = t.clone()
    t[1, 2] = 1.0  # query 1: the teacher prefers a negative over the labelled positive
    gated = DistillationLoss(kl_gate=True)(q, d, t)
    own = torch.einsum("bh,bch->bc", q, d)
    per_query = [DistillKLDivergenceLoss()(own[i:i + 1], t[i:i + 1]).item() for i in range(3)]
    assert gated.kl.item() == pytest.approx((per_query[0] + per_query[2]) / 2, rel=1e-5)
    assert gated.kl_coverage.item() == pytest.approx(2 / 3)
    ungated = DistillationLoss(kl_gate=False)(q, d, t)
    assert ungated.kl.item() == pytest.approx(sum(per_query) / 3, rel=1e-5)
