"""GradCache (kd/retrieval/grad_cache.py): the student's gradients equal the uncached loss's, with the dropout masks
replayed, through the module's training_step and through Lightning's loop; bad settings are refused by key."""

from contextlib import nullcontext

import lightning as L
import pytest
import torch

from kd.retrieval import grad_cache
from kd.retrieval.data.datamodule import RetrievalDataModule
from kd.retrieval.distillation_module import RetrievalDistillationModule
from kd.retrieval.grad_cache import GradCache, split_rows
from kd.retrieval.losses import DistillationLoss
from kd.retrieval.models.bi_encoder import BiEncoder
from kd.retrieval.models.cross_encoder import CrossEncoder

TOLERANCE = 1e-5  # fp32, CPU: largest |difference| allowed between the gradients of one parameter element
FULL_LOSS = dict(kl_weight=1.0, contrastive_weight=1.0, penalty_weight=0.1, margin_mse_weight=0.5, kl_gate=False)


def _batch_and_module(tiny_model_dir, tiny_splits, chunk=None, doc_group_size=None, batch_size=8):
    L.seed_everything(0, verbose=False)
    student = BiEncoder(str(tiny_model_dir), max_length=32)
    teacher = CrossEncoder(str(tiny_model_dir), max_length=48)
    datamodule = RetrievalDataModule(tiny_splits, student, teacher, num_negatives=2, mined_negatives=1,
                                     mining="bm25", batch_size=batch_size, seed=0, doc_group_size=doc_group_size)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    module = RetrievalDistillationModule(student, teacher, DistillationLoss(**FULL_LOSS), grad_cache_chunk=chunk)
    return batch, module


def _gradients(module, batch, seed=0, dropout=False):
    """{name: grad} of the student's parameters after one training_step + backward."""
    module.train()
    module.student.train(dropout)
    module.student.zero_grad()
    torch.manual_seed(seed)
    module.training_step(batch, 0).backward()
    return {n: p.grad.clone() for n, p in module.student.named_parameters() if p.grad is not None}


def _max_difference(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("chunk,doc_group_size", [(1, None), (3, None), (5, 4)])
def test_gradients_equal_the_uncached_loss(tiny_model_dir, tiny_splits, chunk, doc_group_size):
    batch, module = _batch_and_module(tiny_model_dir, tiny_splits, doc_group_size=doc_group_size)
    expected = _gradients(module, batch)  # eval-mode student: no dropout, one forward over the whole batch
    module.grad_cache_chunk = chunk
    cached = _gradients(module, batch)
    assert len(cached) == len(expected) == len(list(module.student.parameters())) - 2  # all but the unused pooler
    assert max(float(g.abs().max()) for g in expected.values()) > 1e-3  # the loss really moves the student
    assert _max_difference(cached, expected) < TOLERANCE


def test_dropout_is_replayed_in_the_grad_pass(tiny_model_dir, tiny_splits, monkeypatch):
    """With dropout on, each chunk's masks are drawn from the RNG; the grad pass must see the no-grad pass's masks.
    Reference: the uncached loss with the student embedding the same chunks one after another from the same seed."""
    batch, module = _batch_and_module(tiny_model_dir, tiny_splits, chunk=4)
    cached = _gradients(module, batch, seed=7, dropout=True)

    student, chunk = module.student, 4
    original_embed = student.embed
    monkeypatch.setattr(student, "embed", lambda tokens: torch.cat([student(**c) for c in split_rows(tokens, chunk)]))
    module.grad_cache_chunk = None
    reference = _gradients(module, batch, seed=7, dropout=True)
    other_seed = _gradients(module, batch, seed=8, dropout=True)
    assert _max_difference(reference, other_seed) > 100 * TOLERANCE  # dropout really changes the gradients
    assert _max_difference(cached, reference) < TOLERANCE

    monkeypatch.setattr(student, "embed", original_embed)  # and without the replay, the grad pass's masks differ
    monkeypatch.setattr(grad_cache.RngState, "replay", lambda self: nullcontext())
    module.grad_cache_chunk = chunk
    assert _max_difference(_gradients(module, batch, seed=7, dropout=True), reference) > 100 * TOLERANCE


def test_the_incoming_gradient_scales_the_cached_one(tiny_model_dir, tiny_splits):
    """Lightning divides the loss by accumulate_grad_batches (and a GradScaler multiplies it) before backward."""
    batch, module = _batch_and_module(tiny_model_dir, tiny_splits, chunk=3)
    module.train()
    module.student.eval()
    full = _gradients(module, batch)
    module.student.zero_grad()
    (module.training_step(batch, 0) * 0.25).backward()
    halves = {n: p.grad for n, p in module.student.named_parameters() if p.grad is not None}
    assert _max_difference({k: 4 * v for k, v in halves.items()}, full) < TOLERANCE


def test_lightning_fit_with_clipping_and_accumulation_matches_uncached(tiny_model_dir, tiny_splits):
    """Through Lightning's loop (gradient clipping, accumulation of 2 batches): same weights after 2 updates."""
    weights = {}
    for chunk in (None, 3):
        L.seed_everything(0, verbose=False)
        student = BiEncoder(str(tiny_model_dir), max_length=32)
        for m in student.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0  # Lightning puts the student in train mode: equality needs dropout-free forwards
        teacher = CrossEncoder(str(tiny_model_dir), max_length=48)
        datamodule = RetrievalDataModule(tiny_splits, student, teacher, num_negatives=2, mined_negatives=1,
                                         mining="bm25", batch_size=2, seed=0)
        module = RetrievalDistillationModule(student, teacher, DistillationLoss(**FULL_LOSS), lr=1e-3,
                                             warmup_ratio=0.0, grad_cache_chunk=chunk)
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0, max_steps=2, accumulate_grad_batches=2, gradient_clip_val=0.05)
        trainer.fit(module, datamodule=datamodule)
        assert trainer.global_step == 2
        weights[chunk] = {k: v.clone() for k, v in student.state_dict().items()}
    start = BiEncoder(str(tiny_model_dir), max_length=32).state_dict()
    moved = max(float((weights[None][k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-4
    assert max(float((weights[None][k] - weights[3][k]).abs().max()) for k in start) < 1e-5


def test_bad_chunk_sizes_are_refused():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="grad_cache_chunk"):
            GradCache(torch.nn.Identity(), bad)
    with pytest.raises(ValueError, match="loss.grad_cache_chunk must be null or an integer >= 1, got 0"):
        RetrievalDistillationModule(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), DistillationLoss(),
                                    grad_cache_chunk=0)


def test_split_rows_trims_each_chunk_to_its_longest_text():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
    chunks = split_rows({"input_ids": mask * 7, "attention_mask": mask}, 2)
    assert [tuple(c["attention_mask"].shape) for c in chunks] == [(2, 3), (1, 2)]
    assert chunks[1]["input_ids"].tolist() == [[7, 7]]
