"""kd-generate-queries as a command: bad input stops with one line naming the problem, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from pipeline_helpers import FakeOpenAI  # noqa: E402  (the OpenAI-compatible fake server of the pipeline tests)


def run_cli(tmp_path, beir_dir, *overrides):
    return subprocess.run([sys.executable, "-m", "kd.cli.generate_queries", "data=beir", f"data.path={beir_dir}",
                           "teacher@filter.teacher=bm25", f"out_dir={tmp_path / 'gen'}",
                           f"paths.cache_dir={tmp_path / 'cache'}", "progress=false", *overrides],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))


@pytest.mark.parametrize("overrides, message", [
    (["sample=0"], "kd-generate-queries: error: sample must be a number of documents >= 1, got 0: an empty corpus "
                   "sample"),
    (["doc_ids=[d5,d404]"], "kd-generate-queries: error: doc_ids: document id 'd404' is not in the corpus of "),
])
def test_bad_sample_stops_with_one_line(tiny_beir_dir, tmp_path, overrides, message):
    proc = run_cli(tmp_path, tiny_beir_dir, *overrides)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "gen" / "queries.jsonl").exists()


def test_api_teacher_replying_without_a_question_stops_with_one_line_and_writes_no_queries(tiny_beir_dir, tmp_path):
    server = FakeOpenAI()  # answers this prompt with "I don't know."
    try:
        proc = run_cli(tmp_path, tiny_beir_dir, "pipeline/teacher=openai", f"teacher.base_url={server.url}",
                       "teacher.backoff_s=0.01", "doc_ids=[d5,d6]")
    finally:
        server.close()
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kd-generate-queries: error:")]
    assert errors == [f"kd-generate-queries: error: {tmp_path / 'gen' / 'shards'}: the teacher's reply holds no query "
                      "for any of the 2 documents (first reply: \"I don't know.\"); nothing written"]
    assert len(server.requests) == 2 and server.requests[0]["body"]["model"] == "gpt-4o-mini"
    assert not (tmp_path / "gen" / "queries.jsonl").exists() and not (tmp_path / "gen" / "manifest.json").exists()
