"""The throughput options of the DataModule: bucketed batches cover every example, grouped documents match."""

import lightning as L
import torch

from kd.retrieval.data.datamodule import RetrievalDataModule
from kd.retrieval.distillation_module import RetrievalDistillationModule
from kd.retrieval.losses import DistillationLoss
from kd.retrieval.models.bi_encoder import BiEncoder
from kd.retrieval.models.cross_encoder import CrossEncoder
from kd.retrieval.models.length_groups import LengthGroups


def _datamodule(tiny_model_dir, tiny_splits, **options):
    L.seed_everything(0, verbose=False)
    student = BiEncoder(str(tiny_model_dir), max_length=32)
    teacher = CrossEncoder(str(tiny_model_dir), max_length=48)
    datamodule = RetrievalDataModule(tiny_splits, student, teacher, num_negatives=2, mined_negatives=1,
                                     mining="bm25", batch_size=4, seed=0, **options)
    datamodule.setup("fit")
    return student, teacher, datamodule


def test_bucketed_batches_cover_every_example_once_and_group_the_documents(tiny_model_dir, tiny_splits):
    student, _, datamodule = _datamodule(tiny_model_dir, tiny_splits, length_buckets=True, doc_group_size=3)
    loader = datamodule.train_dataloader()
    seen = [q for batch in loader for q in batch["query_ids"]]
    examples = datamodule.train_set.examples
    full = len(examples) // 4 * 4  # drop_last: only the short batch is dropped
    indices = [i for batch in loader.batch_sampler for i, _ in batch]
    assert len(seen) == len(indices) == len(set(indices)) == full
    assert set(indices) <= set(range(len(examples)))
    first = list(loader.batch_sampler)
    assert first == list(loader.batch_sampler)  # same seed and epoch -> same batches
    batch = next(iter(loader))
    assert isinstance(batch["docs"], LengthGroups) and len(batch["docs"]) == 4 * 3
    assert all(g["input_ids"].shape[0] <= 3 for g in batch["docs"].groups)


def test_grouped_and_padded_documents_give_the_same_loss(tiny_model_dir, tiny_splits):
    losses = []
    for group_size in (None, 2):
        student, teacher, datamodule = _datamodule(tiny_model_dir, tiny_splits, doc_group_size=group_size,
                                                   pretokenize=group_size is not None)
        module = RetrievalDistillationModule(student, teacher, DistillationLoss(), warmup_ratio=0.0)
        module.eval()  # no dropout: the two paths must compute the same numbers
        batch = next(iter(datamodule.train_dataloader()))
        with torch.no_grad():
            losses.append(module.training_step(batch, 0).item())
    assert abs(losses[0] - losses[1]) < 1e-5, losses
