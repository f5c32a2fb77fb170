"""Wrong types, out-of-range values, impossible combinations and unknown keys are refused at start-up, each
naming the offending key, through the real configs (and, for two of them, the real kd-train command)."""

import os
import subprocess
import sys

import pytest

from kd.retrieval.config_validation import FIELDS, validate_train_config
from kd.errors import ConfigError
from tests.cli.test_cli_train import _compose

BAD = [
    ("loss.kl_weight=abc", "loss.kl_weight must be a number, got 'abc'"),
    ("loss.kl_weight=-1", "loss.kl_weight must be >= 0"),
    ("data.batch_size=4.5", "data.batch_size must be an integer, got 4.5"),
    ("data.batch_size=0", "data.batch_size must be >= 1"),
    ("data.teacher_filter=maybe", "data.teacher_filter must be true or false"),
    ("data.mining=tfidf", "data.mining must be one of none, bm25, dense"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("optim.warmup_ratio=1.5", "optim.warmup_ratio must be <= 1"),
    ("student.max_length=null", "student.max_length must be set"),
    ("loss.student_temperature=0", "loss.student_temperature must be > 0"),
    ("trainer.max_epochs=true", "trainer.max_epochs must be an integer, got True"),
    ("data.mined_negatives=5", "data.mined_negatives=5 exceeds data.num_negatives=3"),
    ("data.corpus_size=3", "data.num_negatives=3 needs a corpus larger than data.corpus_size=3"),
    ("loss.grad_cache_chunk=0", "loss.grad_cache_chunk must be >= 1, got 0"),
    ("loss.grad_cache_chunk=-4", "loss.grad_cache_chunk must be >= 1, got -4"),
    ("loss.grad_cache_chunk=2.5", "loss.grad_cache_chunk must be an integer, got 2.5"),
    ("trainer=ddp loss.grad_cache_chunk=4", "loss.grad_cache_chunk=4 is single-process only"),
]


@pytest.mark.parametrize("override,message", BAD)
def test_bad_values_are_refused_naming_the_key(override, message, tmp_path):
    cfg = _compose([*override.split(), f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="invalid config") as error:
        validate_train_config(cfg)
    assert message in str(error.value)


def test_grad_cache_chunk_composes_off_by_default_and_reaches_the_module(tmp_path):
    from kd.retrieval.run import build_loss

    assert _compose([f"paths.output_dir={tmp_path}"]).loss.grad_cache_chunk is None
    cfg = _compose(["loss.grad_cache_chunk=8", "loss.teacher_temperature=0.05", f"paths.output_dir={tmp_path}"])
    validate_train_config(cfg)
    assert cfg.loss.grad_cache_chunk == 8
    _, options, _ = build_loss(cfg)  # a module option, not a DistillationLoss argument
    assert "grad_cache_chunk" not in options


def test_all_loss_weights_zero_is_refused(tmp_path):
    cfg = _compose(["loss.kl_weight=0", "loss.contrastive_weight=0", "loss.penalty_weight=0",
                    f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="all 0: nothing to train"):
        validate_train_config(cfg)


def test_every_problem_is_listed_at_once(tmp_path):
    cfg = _compose(["loss.kl_weight=abc", "optim.lr=-1", f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError) as error:
        validate_train_config(cfg)
    assert "loss.kl_weight" in str(error.value) and "optim.lr" in str(error.value)


@pytest.mark.parametrize("group,option", [("data", "scifact"), ("data", "scifact_mini"), ("data", "scifact_sweep"),
                                          ("teacher", "ms_marco"), ("precision", "nf4_teacher"),
                                          ("checkpoint", "none"), ("trainer", "gpu")])
def test_shipped_options_pass(group, option, tmp_path):
    validate_train_config(_compose([f"{group}={option}", f"paths.output_dir={tmp_path}"]))


def test_every_checked_key_exists_in_the_default_config_or_the_cross_encoder_teacher(tmp_path):
    from omegaconf import OmegaConf

    default = _compose([f"paths.output_dir={tmp_path}"])
    cross_encoder = _compose([f"paths.output_dir={tmp_path}", "teacher=cross_encoder"])  # teacher.max_length
    missing = [k for k in FIELDS if all(OmegaConf.select(c, k, default="<absent>") == "<absent>"
                                        for c in (default, cross_encoder))]
    assert missing == []  # a renamed key would silently escape validation


def run_cli(*overrides):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "kd.cli.train", *overrides, "logger=none"], capture_output=True,
                          text=True, env=env, timeout=300)


def test_cli_wrong_type_exits_2_with_one_clear_line(tmp_path):
    proc = run_cli("loss.kl_weight=abc", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert "loss.kl_weight must be a number, got 'abc'" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_unknown_key_is_refused_by_hydra_naming_it(tmp_path):
    proc = run_cli("loss.kl_wieght=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "kl_wieght" in proc.stderr and "not in struct" in proc.stderr and "Traceback" not in proc.stderr
