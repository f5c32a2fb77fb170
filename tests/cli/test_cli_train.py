"""kd-train through the real Hydra configs (conf/), on tiny models and data."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import kd.config  # noqa: F401
from kd.retrieval.run import run_training

CONF = str(Path(__file__).resolve().parents[2] / "conf")
GROUPS = ["data", "teacher", "student", "loss", "optim", "trainer", "logger", "checkpoint", "precision",
          "hparams_search", "index"]


def tiny_overrides(model_dir, beir_dir, out_dir, cache_dir):
    return [
        "data=beir", f"data.path={beir_dir}", "data.num_negatives=2", "data.mined_negatives=1", "data.batch_size=4",
        f"student.name_or_path={model_dir}", "student.max_length=32",
        "teacher=cross_encoder", "data.dev_fraction=0",
        f"teacher.train.base_model={model_dir}", "teacher.max_length=48", "teacher.train.batch_groups=4",
        "teacher.train.bm25_negatives=2",
        "logger=csv", "trainer.max_epochs=4", "optim.lr=2e-3", "optim.warmup_ratio=0.0", "save_student=false",
        f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}",
    ]


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("group", GROUPS)
def test_every_config_option_composes(group, tmp_path):
    for option in sorted(Path(CONF, group).glob("*.yaml")):
        overrides = [f"{group}={option.stem}", f"paths.output_dir={tmp_path}"]
        if option.stem == "beir":
            overrides.append(f"data.path={tmp_path}")
        cfg = _compose(overrides)
        node = cfg.get(group)
        if node is not None:  # hparams_search presets are global (they set hydra.sweeper.*)
            OmegaConf.to_container(node, resolve=group != "data")  # interpolations resolve


def test_default_config_is_the_offline_packaged_setup_with_an_audited_ensemble_teacher():
    cfg = _compose(["paths.output_dir=/tmp/x"])
    assert cfg.student.name_or_path == "packaged:minilm"
    assert cfg.teacher.kind == "ensemble" and set(cfg.teacher.members) == {"bm25", "minilm"}
    assert cfg.teacher.members.minilm.name_or_path == "packaged:minilm"
    assert cfg.teacher.weights == "auto" and cfg.teacher.audit and cfg.data.dev_fraction == 0.1
    assert cfg.loss.teacher_temperature == "auto"
    assert cfg.loss.kl_weight > 0 and cfg.loss.contrastive_weight > 0 and cfg.loss.penalty_weight > 0


@pytest.mark.parametrize("override, key", [
    ("~teacher.members", "teacher.members is empty"),
    ("teacher.weights={bm25: 1.0}", "teacher.weights names"),
    ("+teacher.members.oracle={kind: crystal_ball}", "teacher.members.oracle.kind"),
])
def test_bad_teacher_config_stops_kd_train_with_one_line_naming_the_key(override, key, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kd.cli.train", override, "logger=none",
                           f"hydra.run.dir={tmp_path / 'o'}"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"kd-train: error: {key}" in proc.stderr and "Traceback" not in proc.stderr


def test_ensemble_teacher_run_writes_the_audit_and_calibration(tiny_model_dir, tiny_beir_dir, tmp_path):
    from kd.retrieval.run import run_training

    overrides = [o for o in tiny_overrides(tiny_model_dir, tiny_beir_dir, tmp_path / "out", tmp_path / "cache")
                 if not o.startswith(("teacher", "data.dev_fraction"))]
    cfg = _compose([*overrides, "teacher=ensemble", f"teacher.members.minilm.name_or_path={tiny_model_dir}",
                    "data.dev_fraction=0.3", "teacher.audit_depth=5", "data.mining=teacher",
                    "loss.margin_mse_weight=0.5", "trainer.max_epochs=2"])
    results = run_training(cfg)
    audit = results["teacher_audit"]
    assert audit["split"] == "dev" and audit["queries"] == 5  # 30 % of the 8 train queries, at least 5
    assert set(audit["teacher"]) == set(audit["student"]) == {"ndcg@10", "recall@10"}
    # BM25 finds every topical document of this lexical toy data: the fusion chosen on dev must rank perfectly
    assert audit["teacher"]["ndcg@10"] == pytest.approx(1.0) and audit["fusion"]["weights"]["bm25"] > 0
    assert results["calibration"]["source"] == "fitted on the dev split"
    assert results["calibration"]["teacher_temperature"] >= results["calibration"]["floor"] > 0
    assert results["data"]["train_queries"] == 3 and results["teacher_kind"] == "ensemble"
    assert "margin_mse" in results["train"] and math.isfinite(results["train"]["margin_mse"])
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["teacher_audit"] == json.loads(json.dumps(audit))


def test_require_better_refuses_a_teacher_that_does_not_beat_the_student(tiny_model_dir, tiny_beir_dir, tmp_path):
    from kd.errors import ConfigError
    from kd.retrieval.run import run_training

    overrides = [o for o in tiny_overrides(tiny_model_dir, tiny_beir_dir, tmp_path / "out", tmp_path / "cache")
                 if not o.startswith(("teacher", "data.dev_fraction"))]
    # the student against itself: a frozen copy of the same tiny model cannot be better than it
    cfg = _compose([*overrides, "teacher=bi_encoder", f"teacher.name_or_path={tiny_model_dir}",
                    "teacher.max_length=32", "data.dev_fraction=0.3", "teacher.audit_depth=5",
                    "teacher.require_better=true"])
    with pytest.raises(ConfigError, match="NOT BETTER THAN THE STUDENT.*require_better=true refuses"):
        run_training(cfg)


def test_run_training_writes_config_and_metrics_and_learns(tiny_model_dir, tiny_beir_dir, tmp_path):
    out = tmp_path / "run"
    cfg = _compose(tiny_overrides(tiny_model_dir, tiny_beir_dir, out, tmp_path / "cache") + ["loss.kl_weight=0.5"])
    results = run_training(cfg)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["after"] == results["after"]
    assert "kl_weight: 0.5" in (out / "resolved_config.yaml").read_text()
    assert set(results["train"]) >= {"kl", "contrastive", "penalty", "total"}
    # 32 documents, one relevant per query: a random ranking finds it in the top 10 with probability 10/32
    assert results["after"]["recall@10"] > 10 / 32
    assert results["after"]["ndcg@10"] > results["before"]["ndcg@10"]
    # the trained teacher is cached (one folder with its manifest) for later runs to reuse
    teachers = list((tmp_path / "cache" / "teachers").iterdir())
    assert len(teachers) == 1 and (teachers[0] / "kd_teacher.json").is_file()


def test_kd_train_entry_point_with_overrides(tiny_model_dir, tiny_beir_dir, tmp_path):
    out = tmp_path / "cli-run"
    overrides = tiny_overrides(tiny_model_dir, tiny_beir_dir, out, tmp_path / "cache")
    overrides = [o for o in overrides if not o.startswith("paths.output_dir")] + [f"hydra.run.dir={out}",
                                                                                  "trainer.max_epochs=1"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "kd.cli.train", *overrides], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "student after distillation" in proc.stdout
    assert (out / ".hydra" / "config.yaml").is_file() and (out / "metrics.json").is_file()
    ran = OmegaConf.load(out / "resolved_config.yaml")  # the command-line overrides are what ran
    assert ran.trainer.max_epochs == 1 and ran.student.max_length == 32 and ran.data.path == str(tiny_beir_dir)
    assert ran.logger._target_.endswith("CSVLogger") and list((out / "csv").rglob("metrics.csv"))


def test_kd_eval_matches_the_training_runs_final_metrics(tiny_model_dir, tiny_beir_dir, tmp_path):
    from kd.cli.evaluate import run_evaluation

    out = tmp_path / "run"
    cfg = _compose(tiny_overrides(tiny_model_dir, tiny_beir_dir, out, tmp_path / "cache")
                   + ["save_student=true", "trainer.max_epochs=1"])
    results = run_training(cfg)
    card = (out / "student" / "README.md").read_text()  # the student is a sentence-transformers folder with a card
    assert (out / "student" / "modules.json").is_file() and f"{results['after']['ndcg@10']:.4f}" in card
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        eval_cfg = compose(config_name="eval", overrides=[
            "data=beir", f"data.path={tiny_beir_dir}", f"student.name_or_path={out / 'student'}",
            "student.max_length=32", f"rerank_with={results['teacher']}", "rerank_max_length=48",
            f"paths.cache_dir={tmp_path / 'cache'}", f"output={tmp_path / 'eval.json'}"])
    rows = run_evaluation(eval_cfg)
    student_metrics = next(iter(rows.values()))
    for name, value in results["after"].items():
        assert student_metrics[name] == pytest.approx(value, abs=1e-5)
    assert len(rows) == 2 and json.loads((tmp_path / "eval.json").read_text()) == rows


def test_bad_input_file_is_one_clear_error_naming_file_and_line(tiny_model_dir, tiny_beir_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_beir_dir, broken)
    lines = (broken / "corpus.jsonl").read_text().splitlines()
    lines[2] = '{"_id": "d3", "text": "unterminated'
    (broken / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    overrides = tiny_overrides(tiny_model_dir, broken, tmp_path / "out", tmp_path / "cache")
    overrides = [o for o in overrides if not o.startswith("paths.output_dir")] + [f"hydra.run.dir={tmp_path / 'o'}"]
    proc = subprocess.run([sys.executable, "-m", "kd.cli.train", *overrides], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2
    assert f"kd-train: error: {broken / 'corpus.jsonl'}:3:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_kd_train_teacher_reports_bm25_and_teacher_rows(tiny_model_dir, tiny_beir_dir, tmp_path):
    from kd.cli.train_teacher import train_and_report

    cfg = _compose(tiny_overrides(tiny_model_dir, tiny_beir_dir, tmp_path / "out", tmp_path / "cache"))
    report = train_and_report(cfg, rerank_depth=10)
    assert Path(report["teacher"], "kd_teacher.json").is_file()
    assert 0.0 <= report["teacher reranking BM25 top-10 (eval)"]["ndcg@10"] <= 1.0
    # the BM25 row is the real BM25: on this lexical toy data it finds every relevant document in its top 10
    assert report["BM25 (eval)"]["recall@10"] == 1.0


def test_kd_train_teacher_reports_dev_and_eval_rows_and_refuses_a_non_cross_encoder(tiny_model_dir, tiny_beir_dir,
                                                                                     tmp_path):
    from kd.cli.train_teacher import train_and_report
    from kd.errors import ConfigError

    overrides = tiny_overrides(tiny_model_dir, tiny_beir_dir, tmp_path / "out", tmp_path / "cache")
    cfg = _compose([o for o in overrides if not o.startswith("data.dev_fraction")] + ["data.dev_fraction=0.3"])
    report = train_and_report(cfg, rerank_depth=10)
    assert {"BM25 (dev)", "teacher reranking BM25 top-10 (dev)", "BM25 (eval)"} <= set(report)
    assert json.loads(Path(report["teacher"], "kd_teacher.json").read_text())["kept_epoch"] == 0
    with pytest.raises(ConfigError, match="trains a cross-encoder"):
        train_and_report(_compose([f"paths.output_dir={tmp_path}", "teacher=bm25"]))
