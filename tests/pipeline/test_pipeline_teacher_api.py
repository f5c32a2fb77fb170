"""The OpenAI-compatible teacher against a real HTTP server on 127.0.0.1: retries, back-off, timeouts, key hygiene."""

from __future__ import annotations

import logging

import pytest
from pipeline_helpers import openai_server  # noqa: F401 - fixture

from kd.pipeline.teacher import OpenAIChatTeacher, TeacherError

KEY = "sk-test-VERYSECRET-42"
MSG = [{"role": "user", "content": "Answer: Pods run containers."}]


@pytest.fixture
def teacher_factory(openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    sleeps: list[float] = []

    def make(**kw):
        kw.setdefault("backoff_s", 0.01)
        kw.setdefault("timeout_s", 5)
        t = OpenAIChatTeacher(model="gpt-4o-mini", base_url=openai_server.url, sleep=lambda s: sleeps.append(s), **kw)
        return t

    make.sleeps = sleeps
    return make


def test_success_sends_key_only_in_header(openai_server, teacher_factory):
    t = teacher_factory()
    assert t.chat(MSG) == "I don't know."
    req = openai_server.requests[-1]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == f"Bearer {KEY}"
    assert req["body"]["model"] == "gpt-4o-mini" and req["body"]["messages"] == MSG
    assert KEY not in repr(t)


def test_429_then_success_is_retried_with_backoff(openai_server, teacher_factory, caplog):
    openai_server.script = [("status", 429, '{"error": "rate limited"}'), ("status", 429, "{}")]
    t = teacher_factory()
    with caplog.at_level(logging.WARNING):
        assert t.chat(MSG) == "I don't know."
    assert len(openai_server.requests) == 3 and t.retries == 2
    assert teacher_factory.sleeps == [0.01, 0.02]  # exponential
    assert "HTTP 429" in caplog.text and KEY not in caplog.text


def test_5xx_and_malformed_json_are_retried(openai_server, teacher_factory):
    openai_server.script = [("status", 500, "boom"), ("status", 503, "busy"), ("malformed",)]
    t = teacher_factory()
    assert t.chat(MSG) == "I don't know."
    assert len(openai_server.requests) == 4 and t.retries == 3


def test_timeout_then_success(openai_server, teacher_factory):
    openai_server.script = [("sleep", 1.5)]
    t = teacher_factory(timeout_s=0.3)
    assert t.chat(MSG) == "I don't know."
    assert t.retries == 1 and len(openai_server.requests) == 2


def test_persistent_timeouts_fail_clearly(openai_server, teacher_factory, caplog):
    openai_server.script = [("sleep", 1.0)] * 3
    t = teacher_factory(timeout_s=0.2, max_retries=2)
    with caplog.at_level(logging.WARNING), pytest.raises(TeacherError) as err:
        t.chat(MSG)
    msg = str(err.value)
    assert "failed after 3 attempts" in msg and msg.count("timeout") == 3
    assert KEY not in msg and KEY not in caplog.text


def test_client_error_is_not_retried(openai_server, teacher_factory):
    openai_server.script = [("status", 401, '{"error": "bad key"}')]
    t = teacher_factory()
    with pytest.raises(TeacherError, match="HTTP 401"):
        t.chat(MSG)
    assert len(openai_server.requests) == 1


def test_backoff_is_capped_and_honours_retry_after(teacher_factory):
    t = teacher_factory(backoff_s=1.0, backoff_max_s=5.0)
    assert [t._delay(a, None) for a in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert t._delay(0, {"Retry-After": "3"}) == 3.0


def test_missing_key_for_openai_com_is_refused(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(TeacherError, match="OPENAI_API_KEY"):
        OpenAIChatTeacher(base_url="https://api.openai.com/v1")
