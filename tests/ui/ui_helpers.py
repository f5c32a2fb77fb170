"""Helpers for the kd-ui tests: the pipeline tests' fake OpenAI-compatible teacher, tiny student and tiny
knowledge base (tests/pipeline/pipeline_helpers.py), the form settings of a fast run, a live uvicorn server in a
thread, and polling of the app's state."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from pipeline_helpers import kb_dir, openai_server, smollm_tokenizer_dir, tiny_student  # noqa: E402,F401

pytest.importorskip("fastapi", reason="kd-ui needs the ui extra: pip install -e '.[ui]'")

# what tests/pipeline's fast_overrides sets beyond the form's fields
FAST_EXTRA = "\n".join(["kb.min_chars=40", "kb.max_chars=300", "generation.max_new_tokens_answer=12",
                        "finetune.epochs=2", "finetune.batch_size=2", "finetune.max_length=96",
                        "teacher.backoff_s=0.01", "teacher.timeout_s=10", "eval.heldout_per_topic=1",
                        "eval.bootstrap_resamples=200"])


def fast_settings(tiny_student: str, server_url: str, kb_dir: str, **over) -> dict:
    """The form's fields for a tiny run: API teacher on the fake server, tiny student, tiny knowledge base."""
    s = {"kb_source": kb_dir, "topics": "pods, services, storage", "cycles": "1", "questions_per_cycle": "2",
         "teacher": "openai", "teacher_model": "fake-teacher", "teacher_base_url": server_url, "student": "smollm2",
         "student_model": tiny_student, "threads": "1", "extra_overrides": FAST_EXTRA}
    return s | over


class LiveServer:
    """``kd.ui.app.create_app(output_dir)`` served by uvicorn on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, output_dir: Path):
        import uvicorn

        from kd.ui.app import create_app

        self.app = create_app(output_dir)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
