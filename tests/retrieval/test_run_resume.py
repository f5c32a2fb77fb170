"""A retrieval run killed with SIGKILL mid-epoch resumes and ends exactly where an uninterrupted run ends.

Tiny models and data through the real configs and the real ``kd-train`` entry point: 8 training examples,
2 per batch, 2 epochs = 8 steps, a checkpoint every 3 steps. The killed run dies at the start of step 8's batch
(``global_step == 7``) after its step-6 checkpoint, i.e. in the middle of epoch 2, and loses step 7.
Both runs go through the CLI in fresh processes, as a user's would (two fresh processes agree bitwise; a run
inside the pytest process was seen to differ from them in the last float32 bits).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.cli.test_cli_train import tiny_overrides

TESTS = Path(__file__).resolve().parents[1]  # tests/ (faults.py for the injected kill)


def overrides(model_dir, beir_dir, out, cache):
    """The tiny run's command-line overrides; it writes to ``out`` (``hydra.run.dir``)."""
    base = [o for o in tiny_overrides(model_dir, beir_dir, out, cache)
            if not o.startswith(("trainer.max_epochs", "save_student", "logger", "paths.output_dir"))]
    return base + ["data.batch_size=2", "trainer.max_epochs=2", "checkpoint.every_n_train_steps=3",
                   "save_student=true", "logger=wandb", f"hydra.run.dir={out}"]


def kd_train(args, env_extra=None):
    # each kd-train gets its own W&B service, as separate shell commands do (the in-process run of this test
    # exported WANDB_SERVICE, which would make the children share its service)
    base = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env = dict(base, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "kd.cli.train", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def student_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(next((run_dir / "student").rglob("*.safetensors"))))


def wandb_ids(run_dir: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[1] for p in (run_dir / "wandb").glob("offline-run-*"))


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tiny_model_dir, tiny_beir_dir, tmp_path):
    whole = tmp_path / "whole"
    proc = kd_train(overrides(tiny_model_dir, tiny_beir_dir, whole, tmp_path / "cache-whole"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = json.loads((whole / "metrics.json").read_text())

    killed = tmp_path / "killed"  # its own teacher score cache, so the cache's resume is exercised too
    args = overrides(tiny_model_dir, tiny_beir_dir, killed, tmp_path / "cache-killed")
    proc = kd_train([*args, "+trainer.callbacks=[{_target_: faults.KillAtStep, step: 7}]"], {"KD_FAULT_KILL": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (killed / "metrics.json").exists()
    checkpoint = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 6 and checkpoint["epoch"] == 1  # mid-epoch 2 (of 4 steps each)
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches": 2}]
    assert not any(k.startswith("teacher.") for k in checkpoint["state_dict"])  # frozen teacher not duplicated
    first_id = (killed / "wandb_run_id").read_text().strip()

    proc = kd_train([f"resume={killed}", f"hydra.run.dir={tmp_path / 'resume-invocation'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads((killed / "metrics.json").read_text())

    assert resumed["after"] == expected["after"]  # exactly, fp32 on CPU
    assert resumed["before"] == expected["before"]
    assert resumed["resources"]["train_pairs"] == expected["resources"]["train_pairs"]
    a, b = student_weights(whole), student_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the same W&B run continues: both offline folders carry the id written by the first attempt
    assert wandb_ids(killed) == [first_id, first_id]


def test_relaunched_sweep_skips_finished_jobs_and_resumes_the_interrupted_one(tiny_model_dir, tiny_beir_dir,
                                                                             tmp_path):
    sweep_dir = tmp_path / "multirun"
    base = [o for o in overrides(tiny_model_dir, tiny_beir_dir, sweep_dir, tmp_path / "cache")
            if not o.startswith(("hydra.run.dir", "logger", "save_student"))]
    command = ["-m", *base, "logger=csv", "save_student=false", "loss.kl_weight=0,1", f"hydra.sweep.dir={sweep_dir}",
               "+trainer.callbacks=[{_target_: faults.KillAtStep, step: 5, job: 1}]"]
    proc = kd_train(command, {"KD_FAULT_KILL": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert json.loads((sweep_dir / "0" / "status.json").read_text())["status"] == "ok"
    assert not (sweep_dir / "1" / "status.json").exists()
    assert torch.load(sweep_dir / "1" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    finished_metrics = (sweep_dir / "0" / "metrics.json").read_bytes()

    proc = kd_train(command)  # the same command again, without the fault
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = [json.loads((sweep_dir / job / "status.json").read_text()) for job in ("0", "1")]
    assert [s["status"] for s in statuses] == ["ok", "ok"]
    assert (sweep_dir / "0" / "metrics.json").read_bytes() == finished_metrics  # not run again
    assert "job already finished" in proc.stdout + proc.stderr
    resumed = json.loads((sweep_dir / "1" / "metrics.json").read_text())
    assert resumed["resumed_from"].endswith("last.ckpt") and resumed["resources"]["train_pairs"] == 8 * 2 * 3  # 8 steps of 2 queries x 3 docs, counted across the kill
