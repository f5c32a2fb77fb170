"""Corpus encoding in shards: shard i of n embeds its slice of the corpus and writes one file, atomically.

Shards are independent, so they run in parallel (Hydra joblib / SLURM jobs, one per GPU); a later step
loads every shard back in corpus order and builds one FAISS index. A shard file
``<dir>/shard-<i>-of-<n>.npz`` holds ``ids`` [M] (str), ``vectors`` [M, H] float32 and ``fingerprint`` (corpus
and encoder), so shards of another corpus, another model or another split into n are refused, not mixed.

    kd-eval data=scifact shard=0/2 embeddings_dir=emb   # and shard=1/2 (in parallel)
    kd-eval data=scifact embeddings_dir=emb index=hnsw  # loads both shards, searches
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from kd.errors import ConfigError
from kd.io import atomic_open


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ConfigError(f"shard must be 'i/n' with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


def shard_bounds(size: int, shard: int, num_shards: int) -> tuple[int, int]:
    """[start, stop) of shard ``shard`` when ``size`` items are cut into ``num_shards`` near-equal slices."""
    return size * shard // num_shards, size * (shard + 1) // num_shards


def corpus_fingerprint(corpus: Mapping[str, str], encoder_name: str) -> str:
    digest = hashlib.sha256(encoder_name.encode())
    for doc_id, text in corpus.items():
        digest.update(f"{doc_id}\t{text}\n".encode())
    return digest.hexdigest()[:16]


def shard_path(folder: str | Path, shard: int, num_shards: int) -> Path:
    return Path(folder) / f"shard-{shard:05d}-of-{num_shards:05d}.npz"


def encode_shard(encoder, corpus: Mapping[str, str], shard: int, num_shards: int, folder: str | Path,
                 batch_size: int = 64, fingerprint: str | None = None) -> Path:
    """Embed shard ``shard`` of ``num_shards`` of ``corpus`` (in its order) and write it atomically."""
    fingerprint = fingerprint or corpus_fingerprint(corpus, getattr(encoder, "name_or_path", "encoder"))
    doc_ids = list(corpus)
    start, stop = shard_bounds(len(doc_ids), shard, num_shards)
    ids = doc_ids[start:stop]
    vectors = encoder.encode([corpus[d] for d in ids], batch_size=batch_size) if ids else torch.empty(0, encoder.dim)
    path = shard_path(folder, shard, num_shards)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, ids=np.array(ids, dtype=str), vectors=vectors.float().numpy(),
                 fingerprint=np.array(fingerprint))
    return path


def load_shards(folder: str | Path, corpus: Mapping[str, str], fingerprint: str) -> torch.Tensor:
    """All shards of ``folder`` -> [N, H] float32 in ``corpus`` order; refuses missing or foreign shards."""
    folder = Path(folder)
    files = sorted(folder.glob("shard-*-of-*.npz"))
    if not files:
        raise FileNotFoundError(f"{folder}: no shard-*-of-*.npz files (run the shard encodings first)")
    counts = {int(re.search(r"-of-(\d+)", f.name)[1]) for f in files}
    if len(counts) != 1:
        raise ConfigError(f"{folder}: shards of different splits {sorted(counts)} are mixed; remove the stale ones")
    num_shards = counts.pop()
    missing = [i for i in range(num_shards) if not shard_path(folder, i, num_shards).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: shard(s) {missing} of {num_shards} are missing")
    doc_ids = list(corpus)
    parts = []
    for i in range(num_shards):
        path = shard_path(folder, i, num_shards)
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                raise ConfigError(f"{path}: written for another corpus or encoder (fingerprint "
                                 f"{data['fingerprint']} != {fingerprint})")
            start, stop = shard_bounds(len(doc_ids), i, num_shards)
            if data["ids"].tolist() != doc_ids[start:stop]:
                raise ConfigError(f"{path}: its document ids are not the corpus slice [{start}, {stop})")
            parts.append(torch.from_numpy(data["vectors"].astype(np.float32)))
    return torch.cat(parts)
