"""GradCache: the student's encoding split into chunks so that a large batch needs one chunk's activations.

A contrastive or KL loss over a batch couples every embedding with every other one, so the batch cannot simply be
split into independent micro-batches. GradCache (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size
under Memory Limited Setup"; sentence-transformers' ``CachedMultipleNegativesRankingLoss``) splits the *encoder*
instead of the loss:

1. ``encode``: every chunk of texts is embedded without autograd (no activations kept); the embeddings are joined
   into one leaf tensor that requires grad. The RNG state before each chunk is saved.
2. the loss is computed on those embeddings as usual (cheap: [B, H] and [B, C, H] tensors).
3. ``attach(loss)``: d loss / d embeddings is computed and cached ([N, H] per encoded input), and a detached copy
   of the loss is returned with a hook on it.
4. when the training loop calls ``backward`` on that copy, the hook re-runs each chunk *with* autograd (dropout
   replayed from the saved RNG state, autocast as during step 1) and back-propagates ``sum(embeddings * grad)``
   into the student's parameters. The gradient arriving at the hook (1, or Lightning's 1/accumulate_grad_batches,
   or a GradScaler's scale) multiplies the cached gradient, so accumulation, scaling and clipping behave as
   without GradCache.

Peak activation memory goes from one forward over all B·(1 + C) texts to one forward over ``chunk_size`` texts;
the price is a second forward pass (about +1/3 compute). The parameter gradients equal those of the uncached loss
when the chunks see the same dropout masks (always in eval mode; with dropout the masks are drawn per chunk, so
they equal an uncached loss that embeds chunk by chunk from the same seed; tests/retrieval/test_grad_cache.py).

Single process only: under DDP the replayed forwards would need the reducer's per-forward bookkeeping.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from kd.retrieval.models.length_groups import LengthGroups

Tokens = dict[str, torch.Tensor]


def split_rows(tokens: Tokens, chunk_size: int) -> list[Tokens]:
    """A padded batch (each tensor [N, L]) -> row slices of at most ``chunk_size`` rows, each trimmed to its own
    longest text (columns past the last real token of the chunk are padding only)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rows = tokens["attention_mask"].shape[0]
    chunks = []
    for start in range(0, rows, chunk_size):
        part = {k: v[start : start + chunk_size] for k, v in tokens.items()}
        width = int(part["attention_mask"].sum(dim=1).max()) if len(part["attention_mask"]) else 0
        chunks.append({k: v[:, : max(width, 1)] for k, v in part.items()})
    return chunks


@dataclass
class RngState:
    """The CPU generator's state and, for a CUDA device, that device's generator state."""

    cpu: torch.Tensor
    device: torch.device
    cuda: torch.Tensor | None = None

    @classmethod
    def capture(cls, device: torch.device) -> "RngState":
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(torch.get_rng_state(), device, cuda)

    @contextmanager
    def replay(self):
        """A context in which the generators start from this state; the states from before are restored after."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


@dataclass
class _Encoded:
    """One ``encode`` call: its chunks, each chunk's RNG state, the restore step and the leaf embeddings."""

    chunks: list[Tokens]
    rng: list[RngState]
    restore: Callable[[torch.Tensor], torch.Tensor]
    leaf: torch.Tensor
    grad: torch.Tensor | None = None


@dataclass
class GradCache:
    """Chunked, cached-gradient encoding through ``encoder`` (texts' tokens [n, L] -> embeddings [n, H]).

    ``chunk_size``: texts per chunk (queries and documents are chunked separately). Use one ``GradCache`` per
    training step: ``encode`` each input, compute the loss, return ``attach(loss)`` to the training loop.
    """

    encoder: Callable[..., torch.Tensor]
    chunk_size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _encoded: list[_Encoded] = field(default_factory=list)
    _autocast: tuple[str, bool, torch.dtype] | None = None

    def __post_init__(self):
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"grad_cache_chunk must be an integer >= 1, got {self.chunk_size!r}")
        kind = self.device.type
        self._autocast = (kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))

    def encode(self, tokens: Tokens | LengthGroups) -> torch.Tensor:
        """Embeddings [N, H] of a padded batch [N, L] or of length groups, in input order, computed without
        activations: a leaf tensor whose gradient ``attach`` caches."""
        if isinstance(tokens, LengthGroups):
            chunks = [c for group in tokens.groups for c in split_rows(group, self.chunk_size)]
            restore = tokens.restore
        else:
            chunks = split_rows(tokens, self.chunk_size)
            restore = _identity
        states, parts = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(RngState.capture(self.device))
                parts.append(self.encoder(**{k: v.to(self.device) for k, v in chunk.items()}))
        leaf = restore(torch.cat(parts)).detach().requires_grad_(True)
        self._encoded.append(_Encoded(chunks, states, restore, leaf))
        return leaf

    def attach(self, loss: torch.Tensor) -> torch.Tensor:
        """Cache d loss / d embeddings of every ``encode`` and return ``loss`` detached, with a hook that
        back-propagates through the encoder chunk by chunk when ``backward`` reaches it.

        ``loss``: a scalar computed from the embeddings ``encode`` returned (and from nothing else that needs a
        gradient)."""
        if loss.dim() != 0:
            raise ValueError(f"attach expects a scalar loss, got shape {tuple(loss.shape)}")
        leaves = [e.leaf for e in self._encoded]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        for encoded, grad in zip(self._encoded, grads):
            encoded.grad = torch.zeros_like(encoded.leaf) if grad is None else grad.detach()
        out = loss.detach().requires_grad_(True)
        out.register_hook(self._backward)
        return out

    def _backward(self, grad_output: torch.Tensor) -> None:
        """Re-run each chunk with autograd (same RNG, same autocast) and back-propagate the cached gradient
        times ``grad_output`` into the encoder's parameters."""
        kind, enabled, dtype = self._autocast
        with torch.enable_grad(), torch.autocast(kind, dtype=dtype, enabled=enabled):
            for encoded in self._encoded:
                sorted_grad = _unrestore(encoded.restore, encoded.grad)
                start = 0
                for chunk, rng in zip(encoded.chunks, encoded.rng):
                    rows = chunk["attention_mask"].shape[0]
                    with rng.replay():
                        vectors = self.encoder(**{k: v.to(self.device) for k, v in chunk.items()})
                    weight = sorted_grad[start : start + rows].to(vectors.dtype) * grad_output.to(vectors.dtype)
                    torch.autograd.backward(vectors, weight)
                    start += rows
        self._encoded = []  # one backward per step: free the chunks and the cached gradients


def _identity(rows: torch.Tensor) -> torch.Tensor:
    return rows


def _unrestore(restore: Callable[[torch.Tensor], torch.Tensor], grad: torch.Tensor) -> torch.Tensor:
    """The inverse of ``restore`` applied to ``grad`` [N, H]: rows back in chunk order."""
    if restore is _identity:
        return grad
    index = restore(torch.arange(len(grad), device=grad.device))  # input position i holds sorted row index[i]
    out = torch.empty_like(grad)
    out[index] = grad
    return out
