"""Worker processes for tests/test_distributed.py (a module of its own so spawned processes can import it)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_module(student_dir: str, teacher_dir: str, gather: bool):
    from kd.retrieval.distillation_module import RetrievalDistillationModule
    from kd.retrieval.losses import DistillationLoss
    from kd.retrieval.models.bi_encoder import BiEncoder
    from kd.retrieval.models.cross_encoder import CrossEncoder

    student = BiEncoder(student_dir, max_length=32)
    teacher = CrossEncoder(teacher_dir, max_length=48)
    loss = DistillationLoss(kl_weight=1.0, contrastive_weight=1.0, penalty_weight=0.5, penalty_margin=-0.5,
                            kl_gate=True)
    module = RetrievalDistillationModule(student, teacher, loss, gather_across_devices=gather)
    module.student.eval()  # no dropout: the runs must be comparable number for number
    return module


def loss_and_grads(module, examples, positives) -> tuple[float, dict[str, torch.Tensor]]:
    """One training step's loss on ``examples`` and the student's gradients (not averaged)."""
    from kd.retrieval.data.collate import DistillationCollator

    batch = DistillationCollator(module.student, module.teacher, positives)(examples)
    module.student.zero_grad(set_to_none=True)
    loss = module.training_step(batch, 0)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in module.student.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def equivalence_worker(rank: int, world: int, port: int, student_dir: str, teacher_dir: str, examples, positives,
                       out_dir: str) -> None:
    """Rank ``rank`` trains one step on its slice of ``examples`` with and without gathering; rank 0 saves the
    loss and the DDP-averaged gradients (all-reduce sum / W, what DistributedDataParallel does)."""
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        per_rank = len(examples) // world
        mine = examples[rank * per_rank:(rank + 1) * per_rank]
        results = {}
        for gather in (False, True):
            module = build_module(student_dir, teacher_dir, gather)
            loss, grads = loss_and_grads(module, mine, positives)
            for grad in grads.values():
                dist.all_reduce(grad)
                grad /= world
            losses = [None] * world
            dist.all_gather_object(losses, loss)
            results["gather" if gather else "local"] = {"losses": losses, "grads": grads}
        if rank == 0:
            torch.save(results, Path(out_dir) / "distributed.pt")
    finally:
        dist.destroy_process_group()


def run_spawned(worker, world: int, *args) -> None:
    """Start ``world`` processes running ``worker(rank, world, port, *args)`` with one thread each."""
    import torch.multiprocessing as mp

    os.environ["OMP_NUM_THREADS"] = "1"
    mp.spawn(worker, args=(world, free_port(), *args), nprocs=world, join=True)


def sharded_scoring(teacher_dir: str, cache_root: str, queries, documents, devices: int) -> int:
    """Fill a fresh cache for ``teacher_dir`` with ``devices`` CPU processes (Lightning ddp_spawn)."""
    import lightning as L

    from kd.retrieval.models.cross_encoder import CrossEncoder
    from kd.retrieval.teacher_cache import TeacherScoreCache
    from kd.retrieval.teacher_scoring import score_pairs_sharded

    teacher = CrossEncoder(teacher_dir, max_length=48)
    cache = TeacherScoreCache(cache_root, teacher_dir, "fp32", 48)
    strategy = "ddp_spawn" if devices > 1 else "auto"
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    return score_pairs_sharded(trainer, teacher, cache, queries, documents, batch_size=4)
