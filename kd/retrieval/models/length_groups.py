"""Padding without waste: token-id lists padded per length group instead of to the longest text of a batch.

A batch of texts padded to its longest member computes the transformer on every padding position. Sorting the
texts by token length and cutting them into groups of ``group_size``, each padded only to its own longest,
computes the same embeddings (padding is masked out of attention and pooling) on fewer positions. The
``order`` permutation maps the sorted groups back to the input order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


def pad_ids(ids: Sequence[Sequence[int]], pad_id: int, token_type_ids: bool = False) -> dict[str, torch.Tensor]:
    """Token-id lists -> ``input_ids``/``attention_mask`` (+ zero ``token_type_ids``) [N, L], L = longest list."""
    width = max((len(x) for x in ids), default=0)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        mask[row, : len(x)] = 1
    out = {"input_ids": input_ids, "attention_mask": mask}
    if token_type_ids:
        out["token_type_ids"] = torch.zeros_like(input_ids)
    return out


def padding_tokens(tokens: dict[str, torch.Tensor]) -> int:
    """Positions of a padded batch that hold padding (attention_mask == 0)."""
    return int((tokens["attention_mask"] == 0).sum())


@dataclass
class LengthGroups:
    """Texts sorted by token length (longest first) and padded group by group.

    ``order`` [N]: input index of each sorted position; ``groups``: token dicts, each [n_g, L_g] with n_g >= 1 a
    multiple of ``group_size`` except for the last (slices of equal width are merged).
    """

    order: torch.Tensor
    groups: list[dict[str, torch.Tensor]]

    def __len__(self) -> int:
        return int(self.order.numel())

    def padded_positions(self) -> int:
        """Positions the transformer computes (tokens + padding) over all groups."""
        return sum(int(g["input_ids"].numel()) for g in self.groups)

    def padding_tokens(self) -> int:
        return sum(padding_tokens(g) for g in self.groups)

    def restore(self, sorted_rows: torch.Tensor) -> torch.Tensor:
        """Rows [N, ...] in sorted order -> the same rows in input order (differentiable gather)."""
        inverse = torch.empty_like(self.order)
        inverse[self.order] = torch.arange(len(self.order), device=self.order.device)
        return sorted_rows[inverse.to(sorted_rows.device)]


def group_by_length(ids: Sequence[Sequence[int]], group_size: int, pad_id: int,
                    token_type_ids: bool = False) -> LengthGroups:
    """Sort the id lists by length (longest first; ties keep input order) and pad each ``group_size`` slice.

    Consecutive slices that would pad to the same width are one group: splitting them removes no padding and only
    makes smaller, slower matrix products (at 128 tokens nearly every SciFact abstract is cut to 128, and groups of
    4 made a training step 1.3x slower than one padded batch; benchmarks/RESULTS.md §7c).
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    slices: list[list[int]] = []
    for s in range(0, len(order), group_size):
        part = order[s : s + group_size]
        if slices and len(ids[slices[-1][0]]) == len(ids[part[0]]):
            slices[-1].extend(part)  # same width as the slice before: no padding to save by splitting
        else:
            slices.append(list(part))
    groups = [pad_ids([ids[i] for i in part], pad_id, token_type_ids) for part in slices]
    return LengthGroups(torch.tensor(order, dtype=torch.long), groups)
