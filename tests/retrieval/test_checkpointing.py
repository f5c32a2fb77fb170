"""Finding the checkpoint to resume, and RNG states that round-trip through a weights-only checkpoint load."""

import os
import random

import numpy as np
import pytest
import torch

from kd.retrieval.checkpointing import capture_rng_state, find_resume_checkpoint, restore_rng_state
from kd.errors import ConfigError


def make_run(root, name, mtime):
    ckpt = root / name / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (mtime, mtime))
    return ckpt


def test_last_is_the_newest_run_with_a_checkpoint(tmp_path):
    make_run(tmp_path, "2026-11-20_10-00-00", 1000)
    newest = make_run(tmp_path, "2026-11-19_09-00-00", 2000)  # older name, newer checkpoint: mtime decides
    (tmp_path / "2026-11-23_08-00-00").mkdir()  # a newer run without a checkpoint is not resumable
    assert find_resume_checkpoint("last", tmp_path) == (newest.parent.parent, newest)


def test_a_run_folder_or_a_ckpt_file_is_accepted(tmp_path):
    ckpt = make_run(tmp_path, "run", 1000)
    assert find_resume_checkpoint(str(tmp_path / "run"), tmp_path) == (tmp_path / "run", ckpt)
    assert find_resume_checkpoint(str(ckpt), tmp_path) == (tmp_path / "run", ckpt)


@pytest.mark.parametrize("resume,message", [("last", "no run under"), ("nope", "no such run folder"),
                                            ("empty", "has no checkpoints/last.ckpt")])
def test_nothing_to_resume_is_a_clear_config_error(tmp_path, resume, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=message):
        find_resume_checkpoint(str(tmp_path / resume) if resume != "last" else "last", tmp_path / "outputs")


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    state = capture_rng_state()
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.save({"kd": {"rng": state}}, tmp_path / "c.ckpt")
    restored = torch.load(tmp_path / "c.ckpt", weights_only=True)["kd"]["rng"]  # what Lightning does on resume
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    restore_rng_state(restored)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]
