"""The README's main command on the packaged models (slow: about 6 minutes on 2 CPU cores)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kd.paths import shared_dir

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shared_dir() is None or not (shared_dir() / "data/scifact/scifact.zip").is_file(),
                    reason="SciFact zip not found beside the checkout (set KD_SHARED_DIR)")
def test_default_kd_train_improves_the_packaged_student_offline(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline",
               KD_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "kd.cli.train", f"hydra.run.dir={out}"], capture_output=True,
                          text=True, env=env, timeout=1500, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "student before distillation" in proc.stdout and "student after distillation" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    # 300 claims over 800 abstracts: a random ranking scores nDCG@10 ~ 0.01. The packaged student scores
    # ~0.80 before (sound evaluation), and one epoch of distillation must keep it a working retriever (a broken
    # loss, NaN or collapsed embeddings drop it to ~0). Measured on main: 0.805 -> 0.777 with the weak
    # 200-claim teacher; the full-SciFact gain (+3.5 points) is in benchmarks/RESULTS.md.
    assert 0.75 < metrics["before"]["ndcg@10"] < 0.9
    assert metrics["after"]["ndcg@10"] > 0.7 and metrics["after"]["recall@100"] > 0.95
    assert set(metrics["train"]) >= {"kl", "contrastive", "penalty", "total"}
    assert list((out / "wandb").glob("offline-run-*")), "the W&B run was not written offline"
    assert (out / "student" / "model.safetensors").is_file()
