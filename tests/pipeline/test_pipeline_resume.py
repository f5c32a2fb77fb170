"""End-to-end pipeline on tiny models with the API teacher on 127.0.0.1: run dir, resume after SIGKILL, refusal
of a changed config, corrupt step files, failing teacher, no API key on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_helpers import (REPO, fast_overrides, kb_dir, make_config, openai_server,  # noqa: F401
                              smollm_tokenizer_dir, tiny_student)
from kd.pipeline.orchestrate import InjectedCrash, run_pipeline
from kd.pipeline.report import comparable
from kd.pipeline.rundir import ConfigMismatchError, step_keys
from kd.pipeline.teacher import TeacherError

ALL = step_keys(2, heldout=True)
BEFORE_CRASH = ALL.index("cycle1.finetune") + 1  # step files on disk after a kill right after cycle 1's fine-tune


def _files(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in run_dir.rglob("*.json") if p.parent.name != "adapter" and p.name != "manifest.json"
            and not p.name.startswith("report")}


def test_full_run_report_and_resume_after_sigkill(make_config, openai_server, tiny_student, kb_dir, tmp_path):
    # uninterrupted reference run
    ref = run_pipeline(make_config(tmp_path / "ref"))
    assert ref["executed"] == ALL and ref["skipped"] == []
    report = ref["report"]
    assert [c["train_examples"] for c in report["cycles"]] == [2, 4]  # all pairs so far
    qs = [s["question"] for c in report["cycles"] for s in c["samples"]]
    assert len(qs) == 4 and len(set(qs)) == 4  # no repeats across cycles
    for c in report["cycles"]:
        assert c["baseline"]["n"] == 2 and c["finetuned"]["n"] == 2
        assert c["baseline"]["mean"] is not None and 0 < c["baseline"]["mean"] < 1
        # 2 epochs of ceil(pairs / batch 2) steps: 2 steps in cycle 1 (2 pairs), 4 in cycle 2 (4 pairs)
        assert len(c["train_losses"]) == c["train_examples"] and c["finetune_mode"]["quantization"] == "none"
        assert c["improvement_abs"] == pytest.approx(c["finetuned"]["mean_unparseable_as_zero"]
                                                     - c["baseline"]["mean_unparseable_as_zero"], abs=1e-5)
    run_dir = tmp_path / "ref"
    for name in ("report.json", "report.md", "plots/relevancy.png", "plots/loss.png", "plots/step_times.png",
                 "plots/memory.png", "cycle_01/adapter/adapter_config.json"):
        assert (run_dir / name).is_file(), name
    assert set(report["timings"]) == set(ALL)
    assert any(m["stage"].startswith("finetune") for m in report["memory"])
    assert "| 2 | 4 |" in (run_dir / "report.md").read_text()
    # the held-out set: 1 question per topic, never a training question, scored at cycles 0, 1, 2
    heldout_qs = {s["question"] for s in report["heldout"]["samples"]}
    assert len(heldout_qs) == 3 and not heldout_qs & set(qs)
    assert [r["cycle"] for r in report["learning_curve"]] == [0, 1, 2]
    for c in report["cycles"]:
        h = c["heldout"]
        for metric in ("relevancy", "correctness"):
            assert h[metric]["n"] == 3 and 0.0 <= h[metric]["mean"] <= 1.0
            lo, hi = h[metric]["ci95"]
            assert lo <= h[metric]["mean"] <= hi
            assert h[f"{metric}_gain_ci95"][0] <= h[f"{metric}_gain"] <= h[f"{metric}_gain_ci95"][1]
    assert (run_dir / "plots" / "heldout.png").is_file()
    assert "## Held-out questions" in (run_dir / "report.md").read_text()

    # the same run killed (SIGKILL) right after cycle 1's fine-tune, through the CLI
    crashed = tmp_path / "crashed"
    cmd = [sys.executable, "-m", "kd.cli.pipeline",
           *fast_overrides(crashed, tiny_student, openai_server.url, kb_dir), "debug.crash_after=cycle1.finetune"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENAI_API_KEY": "sk-test-SECRET-0123456789"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (crashed / "cycle_01" / "finetune.json").is_file()
    assert not (crashed / "cycle_01" / "finetuned_answers.json").exists()
    before = _files(crashed)
    assert len(before) == BEFORE_CRASH == 11  # knowledge_base + 4 held-out steps + 6 steps of cycle 1

    resumed = run_pipeline(make_config(crashed, resume=True))
    assert resumed["skipped"] == ALL[:BEFORE_CRASH]
    assert resumed["executed"] == ALL[BEFORE_CRASH:]
    after = _files(crashed)
    assert all(after[k] == v for k, v in before.items())  # finished step files untouched
    assert comparable(resumed["report"]) == comparable(report)
    assert json.loads((crashed / "manifest.json").read_text())["status"] == "finished"

    # third run into the finished dir: nothing redone
    again = run_pipeline(make_config(crashed))
    assert again["executed"] == [] and len(again["skipped"]) == len(ALL)

    # the API key never reaches the disk
    for path in [*run_dir.rglob("*"), *crashed.rglob("*")]:
        if path.is_file():
            assert b"SECRET-0123456789" not in path.read_bytes(), path
    assert "SECRET-0123456789" not in proc.stdout + proc.stderr
    assert all(r["auth"] == "Bearer sk-test-SECRET-0123456789" for r in openai_server.requests)


def test_changed_config_is_refused_and_corrupt_step_rebuilt(make_config, tmp_path):
    cfg = make_config(tmp_path / "run", cycles=1)
    first = run_pipeline(cfg)
    with pytest.raises(ConfigMismatchError, match=r"questions_per_cycle: 2 -> 3"):
        run_pipeline(make_config(tmp_path / "run", cycles=1, questions_per_cycle=3))
    # non-semantic keys (timeouts, progress) do not count as a change
    run_pipeline(make_config(tmp_path / "run", cycles=1, **{"teacher.timeout_s": 30}))
    # a torn step file is reported, moved aside and rebuilt
    scores = tmp_path / "run" / "cycle_01" / "baseline_scores.json"
    scores.write_text(scores.read_text()[:50])
    again = run_pipeline(cfg)
    assert again["rebuilt"] == ["cycle1.baseline_scores"] and again["executed"] == ["cycle1.baseline_scores"]
    assert scores.with_name("baseline_scores.json.corrupt").is_file()
    assert comparable(again["report"]) == comparable(first["report"])


def test_failing_teacher_fails_the_step_and_stays_resumable(make_config, openai_server, tmp_path):
    cfg = make_config(tmp_path / "run", cycles=1, **{"teacher.max_retries": 2, "eval.heldout_per_topic": 0})
    # questions: 3 successful calls (questions_per_cycle + 1 candidate passages, one batch); then every reference
    # call gets HTTP 503
    openai_server.script = [("pass",)] * 3 + [("status", 503, "overloaded")] * 3
    with pytest.raises(TeacherError, match=r"failed after 3 attempts: HTTP 503"):
        run_pipeline(cfg)
    assert (tmp_path / "run" / "cycle_01" / "questions.json").is_file()
    assert not (tmp_path / "run" / "cycle_01" / "references.json").exists()
    done = run_pipeline(cfg)
    assert done["skipped"] == ["knowledge_base", "cycle1.questions"] and done["executed"][0] == "cycle1.references"


def test_cli_refuses_impossible_config(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kd.cli.pipeline", f"run_dir={tmp_path / 'x'}",
                           "finetune.quantization=nf4"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "finetune.quantization=nf4 needs a CUDA GPU" in proc.stderr


def test_cli_resume_with_only_run_dir_takes_the_runs_saved_config(make_config, tiny_student, kb_dir, tmp_path):
    """A run not started from the page (no ui_run.json: only its manifest and step files), killed after cycle 1's
    baseline scores, resumed with nothing but ``kd-pipeline run_dir=... resume=true``: the tiny student, fake
    teacher, knowledge base and threads come from its manifest, the finished steps are loaded, and the report equals
    an uninterrupted run's. (The interrupted run is made in-process with crash_mode=raise: the same manifest as
    ``kd-pipeline`` writes, one interpreter start less.)"""
    ref = run_pipeline(make_config(tmp_path / "ref", cycles=1))
    crashed = tmp_path / "cli"
    with pytest.raises(InjectedCrash):
        run_pipeline(make_config(crashed, cycles=1, **{"debug.crash_after": "cycle1.baseline_scores",
                                                       "debug.crash_mode": "raise"}))
    before = _files(crashed)
    assert sorted(before) == ["cycle_00/heldout_answers.json", "cycle_00/heldout_scores.json",
                              "cycle_01/baseline_answers.json", "cycle_01/baseline_scores.json",
                              "cycle_01/questions.json", "cycle_01/references.json", "heldout_questions.json",
                              "heldout_references.json", "knowledge_base.json"]
    manifest = json.loads((crashed / "manifest.json").read_text())
    assert manifest["run_settings"]["threads"] == 1 and manifest["run_settings"]["teacher.timeout_s"] == 10

    proc = subprocess.run([sys.executable, "-m", "kd.cli.pipeline", f"run_dir={crashed}", "resume=true"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENAI_API_KEY": "sk-test-SECRET-0123456789"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steps run: 7, loaded from earlier run: 9" in proc.stdout
    assert all(_files(crashed)[k] == v for k, v in before.items())  # finished step files untouched
    resumed = json.loads((crashed / "report.json").read_text())
    assert comparable(resumed) == comparable(json.loads(json.dumps(ref["report"])))
    assert json.loads((crashed / "manifest.json").read_text())["status"] == "finished"
    assert "SECRET-0123456789" not in proc.stdout + proc.stderr + (crashed / "manifest.json").read_text()

    # a setting given explicitly (here: in-process, as kd-pipeline passes its command line) that differs from the
    # run is still refused, naming the key
    with pytest.raises(ConfigMismatchError, match=r"questions_per_cycle: 2 -> 3"):
        run_pipeline(make_config(crashed, cycles=1, questions_per_cycle=3, resume=True),
                     explicit_keys=["run_dir", "resume", "questions_per_cycle"])


def test_resume_config_merge_rules(tmp_path, monkeypatch):
    """Saved values fill every key not given explicitly; explicit keys win (and a changed one is then refused by the
    config hash); a redacted ``***`` is never used: the current value stays."""
    from kd.pipeline.rundir import RunDir, resume_config

    saved = {"cycles": 3, "teacher": {"model": "m-saved", "hf_token": "***", "base_url": "http://saved/v1"},
             "kb": {"aliases": {"pods": ["pods"]}}, "auth": {"token": "***"}}
    (tmp_path / "manifest.json").write_text(json.dumps({
        "config": saved, "run_settings": {"threads": 1, "teacher.api_key_env": "MY_KEY", "progress": "***"}}))
    cur = {"run_dir": str(tmp_path), "resume": True, "cycles": 2, "threads": None, "progress": True,
           "teacher": {"model": "m-default", "hf_token": "from-env", "base_url": "http://default/v1",
                       "api_key_env": "OPENAI_API_KEY", "device": "auto"}, "kb": {"aliases": None}}
    out = resume_config(cur, ["run_dir", "resume", "pipeline/teacher"])
    assert out["cycles"] == 3 and out["threads"] == 1 and out["kb"]["aliases"] == {"pods": ["pods"]}
    assert out["teacher"] == cur["teacher"]  # the whole group was given explicitly (pipeline/teacher=...)
    out = resume_config(cur, ["run_dir", "resume"])
    assert out["teacher"] == {"model": "m-saved", "hf_token": "from-env", "base_url": "http://saved/v1",
                              "api_key_env": "MY_KEY"}  # teacher.device: not in the run's config, dropped
    assert out["progress"] is True  # redacted in the manifest: the current value, never "***"
    nested = resume_config(cur | {"auth": {"token": {"user": "u", "key": "k"}}}, [])  # a redacted subtree
    assert nested["auth"] == {"token": {"user": "u", "key": "k"}}
    assert resume_config(cur | {"resume": False}, []) == cur | {"resume": False}  # only resume=true reads the manifest
    assert resume_config(cur, ["cycles"])["cycles"] == 2  # explicit: kept, so the hash check refuses it ...

    real = tmp_path / "real"
    RunDir(real, {"cycles": 1, "seed": 0, "threads": 1})
    with pytest.raises(ConfigMismatchError, match=r"cycles: 1 -> 2"):  # ... as before
        RunDir(real, resume_config({"run_dir": str(real), "resume": True, "cycles": 2, "seed": 0}, ["cycles"]))
    assert RunDir(real, resume_config({"run_dir": str(real), "resume": True, "cycles": 2, "seed": 0}, [])).cfg[
        "cycles"] == 1
