"""Checkpoints that let a killed retrieval run continue where it stopped, and finding the one to resume.

A kd checkpoint is Lightning's (student weights, optimizer, LR scheduler, loop progress, the training loader's
position: ``kd.retrieval.data.resumable_loader``) plus what Lightning leaves out, under ``checkpoint["kd"]``: the RNG
states of torch, Python and NumPy (dropout and anything else drawn after the checkpoint repeat exactly) and the
pairs-seen counter. The frozen teacher's weights are not stored (they are reloaded from the teacher's own
folder), and the teacher score cache is flushed to disk whenever a checkpoint is written, so the cache on disk is
never behind the checkpoint. Lightning writes checkpoint files atomically (a temporary file, then a rename).

``resume`` (config key) is ``null`` (start fresh), ``last`` (the newest run folder under ``outputs/`` that has a
checkpoint) or a run folder / ``.ckpt`` file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kd.errors import ConfigError

CHECKPOINT_DIRNAME = "checkpoints"
LAST = "last.ckpt"


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU and every CUDA device), Python's ``random`` and NumPy."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    # plain types and tensors only, so Lightning's weights_only checkpoint loading accepts them
    numpy_state = (str(name), torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached))
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global RNGs back to ``capture_rng_state()``'s result."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_callback(every_n_train_steps: int | None, output_dir: str | Path):
    """A ``ModelCheckpoint`` writing ``<output_dir>/checkpoints/last.ckpt`` every N steps and at epoch ends.

    Only the newest checkpoint is kept (``save_top_k=0``, ``save_last=True``): it is what resuming needs. ``None``
    or 0 turns checkpointing off.
    """
    if not every_n_train_steps:
        return None
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(dirpath=Path(output_dir) / CHECKPOINT_DIRNAME, save_top_k=0, save_last=True,
                           every_n_train_steps=int(every_n_train_steps), save_on_train_epoch_end=True)


def run_checkpoint(run_dir: str | Path) -> Path | None:
    """``<run_dir>/checkpoints/last.ckpt`` when it exists."""
    path = Path(run_dir) / CHECKPOINT_DIRNAME / LAST
    return path if path.is_file() else None


def find_resume_checkpoint(resume: str, outputs_root: str | Path = "outputs") -> tuple[Path, Path]:
    """(run folder, checkpoint file) for ``resume`` = ``last``, a run folder or a ``.ckpt`` file.

    Raises ``ConfigError`` naming ``resume`` and what was looked at when there is nothing to resume.
    """
    if str(resume) == "last":
        root = Path(outputs_root)
        candidates = [c for c in root.glob(f"*/{CHECKPOINT_DIRNAME}/{LAST}")] if root.is_dir() else []
        if not candidates:
            raise ConfigError(f"resume=last: no run under {root.resolve()} has {CHECKPOINT_DIRNAME}/{LAST}")
        ckpt = max(candidates, key=lambda c: c.stat().st_mtime)
        return ckpt.parent.parent, ckpt
    path = Path(resume).expanduser()
    if path.is_file() and path.suffix == ".ckpt":
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIRNAME else path.parent
        return run_dir, path
    if path.is_dir():
        ckpt = run_checkpoint(path)
        if ckpt is None:
            raise ConfigError(f"resume={resume}: {path} has no {CHECKPOINT_DIRNAME}/{LAST} (was it run with "
                              f"checkpoint.every_n_train_steps set?)")
        return path, ckpt
    raise ConfigError(f"resume={resume}: no such run folder or .ckpt file")
