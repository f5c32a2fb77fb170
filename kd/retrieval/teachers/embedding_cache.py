"""On-disk cache of a frozen encoder's document embeddings: each text is embedded once per model and length.

A frozen bi-encoder teacher (e.g. all-mpnet-base-v2, ~11 min per 1,000 abstracts on one CPU core at 256 tokens)
embeds the corpus once; later runs, sweep jobs and subsets of the same corpus reuse the vectors. The file
``<root>/teacher_embeddings/<key>.npz`` holds 12-byte text digests and float32 vectors [N, H]; it is written
atomically and a corrupt file is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from kd.io import atomic_open

log = logging.getLogger(__name__)


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


class EmbeddingCache:
    """Vectors of texts for one encoder identity (a JSON-able mapping: model fingerprint, max length, ...)."""

    def __init__(self, root: str | Path, identity: dict):
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(root) / "teacher_embeddings" / f"{key}.npz"
        self.vectors: dict[bytes, np.ndarray] = {}
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    keys, values = data["keys"], data["values"]
                    if keys.shape[0] != values.shape[0] or not np.isfinite(values).all():
                        raise ValueError("keys and vectors disagree, or non-finite vectors")
                    self.vectors = dict(zip(keys.tolist(), values))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                log.warning("embedding cache %s is corrupt (%s): rebuilding it", self.path, error)
                os.replace(self.path, self.path.with_suffix(".corrupt"))
                self.vectors = {}

    def embed(self, texts: Sequence[str], encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """Vectors [N, H] of ``texts``; only texts not cached yet go through ``encode`` (then the file is saved)."""
        keys = [text_key(t) for t in texts]
        missing = list({k: t for k, t in zip(keys, texts) if k not in self.vectors}.items())
        if missing:
            log.info("embedding %d texts not in %s", len(missing), self.path)
            fresh = encode([t for _, t in missing]).float().cpu().numpy()
            self.vectors.update({k: v for (k, _), v in zip(missing, fresh)})
            self.save()
        return torch.from_numpy(np.stack([self.vectors[k] for k in keys]))

    def save(self) -> None:
        with atomic_open(self.path, "wb") as handle:
            np.savez(handle, keys=np.array(list(self.vectors), dtype="S12"),
                     values=np.stack(list(self.vectors.values())).astype(np.float32))
