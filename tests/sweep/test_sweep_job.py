"""Hydra multirun through kd-train: a failing job does not stop the sweep, and the report shows it."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kd.sweep.report import collect, write_report

REPO = Path(__file__).resolve().parents[2]


def test_sweep_with_a_failing_job_completes_the_others_and_reports_it(tiny_model_dir, tiny_beir_dir, tmp_path):
    sweep_dir = tmp_path / "multirun"
    overrides = [
        "-m", "data=beir", f"data.path={tiny_beir_dir}", "data.mined_negatives=1", "data.batch_size=4",
        f"student.name_or_path={tiny_model_dir}", "student.max_length=32", "teacher=cross_encoder", "data.dev_fraction=0",
        f"teacher.train.base_model={tiny_model_dir}", "teacher.max_length=48", "teacher.train.bm25_negatives=2",
        "trainer.max_epochs=1", "save_student=false", "logger=wandb", f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep_dir}",
        # job 2 asks for more negatives than the 32-document corpus has: it must fail, alone
        "loss.kl_weight=0,1", "data.num_negatives=2,40",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline")
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run([sys.executable, "-m", "kd.cli.train", *overrides], capture_output=True, text=True,
                          env=env, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rows = collect(sweep_dir)
    assert len(rows) == 4
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["data.num_negatives"] for r in failed] == ["40", "40"]
    assert all("num_negatives=40" in r["error"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 2 and all(0.0 <= r["ndcg@10"] <= 1.0 and r["train_pairs_per_s"] > 0 for r in ok)

    # one W&B run per job, grouped by the sweep: runs must not merge
    for job in ("0", "2"):
        runs = list((sweep_dir / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, f"job {job}: {runs}"
        resolved = (sweep_dir / job / "resolved_config.yaml").read_text()
        assert f"group: {sweep_dir.name}" in resolved and f"name: {sweep_dir.name}-job{job}" in resolved

    paths = write_report(sweep_dir)
    with open(paths["csv"]) as handle:
        table = list(csv.DictReader(handle))
    assert [r["status"] for r in table] == [r["status"] for r in rows]
    assert "2 ok, 2 failed" in paths["markdown"].read_text()
    assert paths["ndcg_vs_loss_weights"].stat().st_size > 1000


def test_report_on_a_missing_folder_is_a_clear_error(tmp_path):
    from kd.cli.report import main

    assert main([str(tmp_path / "nope")]) == 2


def test_report_notebook_cells_are_valid_python():
    import json

    notebook = json.loads((REPO / "notebooks" / "sweep_report.ipynb").read_text())
    code = [("".join(c["source"])) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 4 and any("write_report" in c for c in code)
    for cell in code:
        compile(cell, "notebook-cell", "exec")


def test_optuna_preset_runs_trials_and_reports_the_best(tiny_model_dir, tiny_beir_dir, tmp_path):
    import yaml

    sweep_dir = tmp_path / "optuna"
    overrides = [
        "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "data=beir", f"data.path={tiny_beir_dir}",
        "data.mined_negatives=1", "data.num_negatives=2", "data.batch_size=4", f"student.name_or_path={tiny_model_dir}",
        "student.max_length=32", "teacher=cross_encoder", "data.dev_fraction=0",
        f"teacher.train.base_model={tiny_model_dir}", "teacher.max_length=48",
        "teacher.train.bm25_negatives=2", "trainer.max_epochs=1", "save_student=false", "logger=csv",
        "eval_before=false", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep_dir}",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "kd.cli.train", *overrides], capture_output=True, text=True,
                          env=env, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    rows = collect(sweep_dir)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert best["best_value"] == pytest.approx(max(r["ndcg@10"] for r in rows))
    assert set(best["best_params"]) == {"loss.kl_weight", "loss.contrastive_weight", "loss.penalty_weight",
                                        "loss.margin_mse_weight"}


@pytest.mark.parametrize("launcher, gpus, tasks", [("slurm", 1, 1), ("slurm_ddp", 8, 8)])
def test_slurm_launchers_compose_with_their_resources_and_group_jobs_for_wandb(launcher, gpus, tasks, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    import kd.config

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={launcher}", f"paths.output_dir={tmp_path}",
                                                      f"hydra.sweep.dir={tmp_path}/sweep-7"],
                      return_hydra_config=True)
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher_cfg.gpus_per_node, launcher_cfg.tasks_per_node, launcher_cfg.nodes) == (gpus, tasks, 1)
    assert launcher_cfg.cpus_per_task == 8 and launcher_cfg.mem_gb >= 32 and launcher_cfg.timeout_min >= 240
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.job.num = 3
    HydraConfig.instance().set_config(cfg)
    try:
        assert kd.config.sweep_group() == "sweep-7" and kd.config.job_name("x") == "sweep-7-job3"
        # the default logger (W&B) resolves its group and run name from them
        assert cfg.logger._target_.endswith("WandbLogger")
        assert (cfg.logger.group, cfg.logger.name) == ("sweep-7", "sweep-7-job3")
    finally:
        HydraConfig.instance().cfg = None
