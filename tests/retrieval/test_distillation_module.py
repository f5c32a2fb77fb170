"""The LightningModule on tiny random models: the teacher stays frozen, the loss goes down, metrics are right."""

import lightning as L
import pytest
import torch

from kd.retrieval.data.datamodule import RetrievalDataModule
from kd.retrieval.distillation_module import NonFiniteLossError, RetrievalDistillationModule
from kd.retrieval.losses import DistillationLoss
from kd.retrieval.metrics.retrieval import retrieval_metrics
from kd.retrieval.models.bi_encoder import BiEncoder
from kd.retrieval.models.cross_encoder import CrossEncoder


def _setup(tiny_model_dir, tiny_splits, lr=1e-3, batch_size=4, **loss_kwargs):
    L.seed_everything(0, verbose=False)
    student = BiEncoder(str(tiny_model_dir), max_length=32)
    teacher = CrossEncoder(str(tiny_model_dir), max_length=48)
    datamodule = RetrievalDataModule(tiny_splits, student, teacher, num_negatives=2, mined_negatives=1,
                                     mining="bm25", batch_size=batch_size, seed=0)
    module = RetrievalDistillationModule(student, teacher, DistillationLoss(**loss_kwargs), lr=lr, warmup_ratio=0.0)
    return student, teacher, datamodule, module


def _trainer(**kwargs):
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0)
    return L.Trainer(**(defaults | kwargs))


def test_teacher_is_frozen_and_never_optimised(tiny_model_dir, tiny_splits):
    student, teacher, datamodule, module = _setup(tiny_model_dir, tiny_splits)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = _trainer(max_epochs=2)
    trainer.fit(module, datamodule=datamodule)
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items())
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert optimised == {id(p) for p in student.parameters()}
    assert trainer.optimizers[0].defaults["fused"] is True  # one fused AdamW kernel, not a per-tensor loop
    module.train()
    assert module.student.training and not teacher.training


def test_loss_decreases_on_a_fixed_batch(tiny_model_dir, tiny_splits):
    student, teacher, datamodule, module = _setup(tiny_model_dir, tiny_splits, lr=3e-3, batch_size=8)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    module.train()
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_validation_logs_the_metrics_of_its_own_run(tiny_model_dir, tiny_splits):
    _, _, datamodule, module = _setup(tiny_model_dir, tiny_splits)
    logged = _trainer().validate(module, datamodule=datamodule, verbose=False)[0]
    expected = retrieval_metrics(module.last_eval_run, tiny_splits.eval_qrels)
    assert set(module.last_eval_run) == set(tiny_splits.eval_queries)
    for name, value in expected.items():
        assert logged[f"val/{name}"] == pytest.approx(value, abs=1e-6)


def test_nan_loss_stops_training_with_the_step_and_term(tiny_model_dir, tiny_splits):
    _, _, datamodule, module = _setup(tiny_model_dir, tiny_splits)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    module.student.model.embeddings.word_embeddings.weight.data.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss term 'kl' is nan at global step 0"):
        module.training_step(batch, 0)


def test_nan_loss_can_skip_the_batch_instead(tiny_model_dir, tiny_splits):
    _, _, datamodule, module = _setup(tiny_model_dir, tiny_splits)
    module.on_nonfinite = "skip"
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    module.student.model.embeddings.word_embeddings.weight.data.fill_(float("nan"))
    assert module.training_step(batch, 0) is None  # Lightning skips backward and the step for None
    assert module.skipped_batches == 1


def _poison_gradient(module):
    """A finite loss whose gradient is NaN: multiply one weight's gradient by NaN on its way back."""
    weight = module.student.model.encoder.layer[0].attention.self.query.weight
    weight.register_hook(lambda grad: grad * float("nan"))
    return weight


def test_nan_gradient_stops_training_naming_the_tensor(tiny_model_dir, tiny_splits):
    _, _, datamodule, module = _setup(tiny_model_dir, tiny_splits)
    _poison_gradient(module)
    with pytest.raises(NonFiniteLossError, match=r"gradient of student\.model\.encoder\.layer\.0\.attention\.self\."
                                                 r"query\.weight .* at global step 0"):
        _trainer(max_steps=1).fit(module, datamodule=datamodule)


def test_nan_gradient_skip_leaves_every_weight_untouched(tiny_model_dir, tiny_splits):
    _, _, datamodule, module = _setup(tiny_model_dir, tiny_splits)
    module.on_nonfinite = "skip"
    _poison_gradient(module)
    before = {k: v.clone() for k, v in module.student.state_dict().items()}
    _trainer(max_steps=2).fit(module, datamodule=datamodule)
    assert module.skipped_batches == 2
    after = module.student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update, no weight decay, no NaN
