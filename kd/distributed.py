"""Cross-process gathers for training with in-batch negatives over the global batch (no-ops in one process).

Under DDP every process (rank) encodes its own B queries and B·C documents. To let the contrastive term see the
global batch of W·B queries and W·B·C documents, every rank gathers all ranks' embeddings with
``torch.distributed.nn.functional.all_gather``, whose backward sends each rank the *sum* of every rank's
gradient for its own shard (so gradient flows back to the local encoder). Teacher scores and masks are gathered
without gradient.

Gradient bookkeeping, why no world-size factor is needed here: every rank computes the *same* global loss
L(x_1..x_W) on the gathered tensors. The backward of the gather gives rank r the sum over the W ranks of
dL/dx_r, i.e. W·dL/dx_r, so rank r's parameter gradient is W·J_r^T dL/dx_r (J_r: Jacobian of its local
embeddings). DDP then *averages* over ranks: (1/W)·sum_r W·J_r^T dL/dx_r = sum_r J_r^T dL/dx_r = dL/dtheta,
exactly the gradient of one process on the concatenated batch. (Implementations that compute a *local* loss,
the mean over each rank's own queries only, also come out exact with this backward; a gather whose backward
only keeps the local slice would need the loss multiplied by W instead.) ``tests/test_distributed.py`` checks
the equality with 2 gloo processes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def _check_same_shape(tensor: torch.Tensor, what: str) -> None:
    shape = torch.tensor(tensor.shape, dtype=torch.long, device=tensor.device)
    shapes = [torch.empty_like(shape) for _ in range(world_size())]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        raise ValueError(f"cannot gather {what} across processes: shapes differ per rank "
                         f"{[tuple(s.tolist()) for s in shapes]} (every rank needs the same batch size)")


def gather_with_grad(tensor: torch.Tensor, what: str = "tensor") -> torch.Tensor:
    """[B, ...] on each rank -> [W·B, ...] in rank order, differentiable w.r.t. the local shard."""
    if not is_distributed():
        return tensor
    _check_same_shape(tensor, what)
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def gather_no_grad(tensor: torch.Tensor, what: str = "tensor") -> torch.Tensor:
    """[B, ...] on each rank -> [W·B, ...] in rank order (no gradient)."""
    if not is_distributed():
        return tensor
    _check_same_shape(tensor, what)
    sent = tensor.detach().contiguous()
    if sent.dtype == torch.bool:  # not every backend gathers bool
        sent = sent.to(torch.uint8)
    parts = [torch.empty_like(sent) for _ in range(world_size())]
    dist.all_gather(parts, sent)
    return torch.cat(parts, dim=0).to(tensor.dtype)


def gather_objects(obj: Any) -> list[Any]:
    """Any picklable object from each rank -> the list of them in rank order ([obj] in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()
