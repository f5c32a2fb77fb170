"""On-disk cache of the frozen teacher's scores: each (query, document) pair is scored once.

The teacher never changes during distillation, so its sigmoid score of a pair is a pure function of
(teacher weights, load precision, max length, query text, document text). The cache file is keyed by the
first three (``teacher_fingerprint`` hashes the weight files of a local teacher); inside it, pairs are keyed
by a 12-byte BLAKE2b digest of the two texts. It is reused across epochs, runs and sweep jobs; pairs seen for
the first time (e.g. random negatives drawn in a later epoch) are scored on demand and added.

The file (``<cache_dir>/teacher_scores/<key>.npz``) is written atomically (temp file + rename); a torn or
corrupt file found at start is reported and rebuilt from scratch, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from kd.io import atomic_open

log = logging.getLogger(__name__)
KEY_BYTES = 12


def teacher_fingerprint(name_or_path: str) -> str:
    """A string that changes when the teacher's weights change: content hash of a local folder's files,
    else the Hugging Face id itself."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        return f"hub:{name_or_path}"
    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        if file.is_file() and file.suffix in (".json", ".safetensors", ".bin", ".txt", ".model"):
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return f"dir:{digest.hexdigest()}"


def cross_encoder_identity(name_or_path: str, precision: str, max_length: int) -> dict:
    """What determines a cross-encoder's scores: its weights, load precision and pair length (the cache key)."""
    return {"teacher": teacher_fingerprint(name_or_path), "precision": precision, "max_length": int(max_length)}


def pair_key(query: str, document: str) -> bytes:
    """12-byte digest of one (query, document) pair."""
    return hashlib.blake2b(f"{query}\x1f{document}".encode(), digest_size=KEY_BYTES).digest()


class TeacherScoreCache:
    """Scores of (query, document) pairs for one teacher, precision and max length.

    Args:
        root: cache folder (``<root>/teacher_scores/<key>.npz``).
        teacher: the teacher's HF id or folder (fingerprinted).
        precision, max_length: load precision and pair length, part of the key.
        identity: instead of the three above, any JSON-able description of a teacher (``BuiltTeacher.identity``:
            an ensemble's members, weights, method and corpus), hashed into the key.
    """

    def __init__(self, root: str | Path, teacher: str | None = None, precision: str = "fp32", max_length: int = 0,
                 *, identity: dict | None = None):
        if identity is None:  # a cross-encoder: its weights, load precision and pair length
            identity = cross_encoder_identity(teacher, precision, max_length)
        self.key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(root) / "teacher_scores" / f"{self.key}.npz"
        self.scores: dict[bytes, float] = {}
        self.hits = 0
        self.misses = 0
        self.rebuilt_corrupt = False
        self._dirty = False
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys, values = data["keys"], data["values"]
                if keys.dtype != np.dtype(f"S{KEY_BYTES}") or keys.shape != values.shape:
                    raise ValueError(f"unexpected arrays {keys.dtype}{keys.shape} / {values.dtype}{values.shape}")
                if not np.isfinite(values).all():
                    raise ValueError("non-finite scores")
                self.scores = dict(zip(keys.tolist(), values.astype(float).tolist()))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning("teacher score cache %s is corrupt (%s): rebuilding it", self.path, error)
            self.rebuilt_corrupt = True
            self.scores = {}
            os.replace(self.path, self.path.with_suffix(".corrupt"))

    def reload(self) -> None:
        """Read the file again (after another process merged shards into it); unsaved additions are dropped."""
        self.scores = {}
        self._dirty = False
        self._load()

    def __len__(self) -> int:
        return len(self.scores)

    def lookup(self, keys: Sequence[bytes]) -> tuple[torch.Tensor, list[int]]:
        """Scores [N] (NaN where missing) and the indices of the missing pairs."""
        values = torch.full((len(keys),), float("nan"))
        missing = []
        for i, key in enumerate(keys):
            score = self.scores.get(key)
            if score is None:
                missing.append(i)
            else:
                values[i] = score
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return values, missing

    def add(self, keys: Sequence[bytes], values: Sequence[float]) -> None:
        for key, value in zip(keys, values):
            self.scores[key] = float(value)
        self._dirty = self._dirty or len(keys) > 0

    def shard_path(self, rank: int, world_size: int) -> Path:
        """Where process ``rank`` of ``world_size`` writes the scores it computed (merged by ``merge_shards``)."""
        return self.path.with_name(f"{self.key}.shard-{rank:03d}-of-{world_size:03d}.npz")

    def write_shard(self, keys: Sequence[bytes], values: Sequence[float], rank: int, world_size: int) -> Path:
        """Write one process's freshly scored pairs atomically to its own shard file."""
        path = self.shard_path(rank, world_size)
        with atomic_open(path, "wb") as handle:
            np.savez(handle, keys=np.array(list(keys), dtype=f"S{KEY_BYTES}"),
                     values=np.array(list(values), dtype=np.float32))
        return path

    def merge_shards(self, world_size: int) -> int:
        """Add every process's shard to this cache, save it atomically, delete the shards; returns pairs added.

        All ``world_size`` shards must exist (a missing one means a process failed: nothing is merged)."""
        paths = [self.shard_path(rank, world_size) for rank in range(world_size)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"teacher score shards missing: {', '.join(missing)}")
        before = len(self.scores)
        for path in paths:
            with np.load(path, allow_pickle=False) as data:
                keys, values = data["keys"], data["values"]
                if keys.dtype != np.dtype(f"S{KEY_BYTES}") or keys.shape != values.shape or not np.isfinite(values).all():
                    raise ValueError(f"{path}: not a teacher score shard (keys {keys.dtype}{keys.shape}, "
                                     f"values {values.dtype}{values.shape})")
                self.add(keys.tolist(), values.astype(float).tolist())
        self.save()
        for path in paths:
            path.unlink()
        return len(self.scores) - before

    def save(self) -> None:
        """Write the cache atomically (only when something was added)."""
        if not self._dirty:
            return
        keys = np.array(list(self.scores), dtype=f"S{KEY_BYTES}")
        values = np.array(list(self.scores.values()), dtype=np.float32)
        with atomic_open(self.path, "wb") as handle:
            np.savez(handle, keys=keys, values=values)
        self._dirty = False


def score_with_cache(cache: TeacherScoreCache, teacher, queries: Sequence[str], documents: Sequence[str],
                     batch_size: int = 64) -> torch.Tensor:
    """Teacher scores [N] of the pairs, computing (length-sorted, batched) only those not cached."""
    keys = [pair_key(q, d) for q, d in zip(queries, documents)]
    values, missing = cache.lookup(keys)
    if missing:
        first_of: dict[bytes, int] = {}
        for i in missing:
            first_of.setdefault(keys[i], i)  # a pair repeated within the call is scored once
        unique = list(first_of.values())
        fresh = teacher.score([queries[i] for i in unique], [documents[i] for i in unique], batch_size=batch_size)
        cache.add([keys[i] for i in unique], fresh.tolist())
        values[missing] = torch.tensor([cache.scores[keys[i]] for i in missing], dtype=values.dtype)
    return values
