"""Teacher back-ends: an OpenAI-compatible chat API and a local Hugging Face model.

Both expose ``chat(messages, max_new_tokens) -> str``. The API back-end uses only the standard library:
``POST {base_url}/chat/completions`` with a timeout; 429, 5xx, timeouts, connection errors and malformed JSON
are retried with exponential back-off (``Retry-After`` honoured, capped), then the step fails with a
``TeacherError`` naming the URL, the status and the attempts. The key is read from the environment variable named
by ``api_key_env`` and sent only in the ``Authorization`` header: it is never logged, stored or put in messages.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Mapping

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class TeacherError(RuntimeError):
    """The teacher could not produce an answer (after retries)."""


class OpenAIChatTeacher:
    """Chat completions on an OpenAI-compatible endpoint (api.openai.com, vLLM, llama.cpp server, ...)."""

    def __init__(self, model: str = "gpt-4o-mini", base_url: str = "https://api.openai.com/v1",
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0, max_retries: int = 5,
                 backoff_s: float = 1.0, backoff_max_s: float = 30.0, temperature: float = 0.0,
                 seed: int | None = 0, sleep=time.sleep):
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.temperature = temperature
        self.seed = seed
        self._sleep = sleep
        self._key = os.environ.get(api_key_env) or None
        self.name = f"openai:{model}@{base_url}"
        self.calls = 0
        self.retries = 0
        if self._key is None:
            if "api.openai.com" in base_url:
                raise TeacherError(f"teacher.backend=openai needs an API key in the environment variable {api_key_env}")
            log.warning("no %s set: calling %s without an Authorization header", api_key_env, base_url)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIChatTeacher(model={self.model!r}, url={self.url!r})"

    def _post(self, body: bytes) -> tuple[int, bytes, Mapping[str, str]]:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read() if exc.fp else b"", dict(exc.headers or {})

    def _delay(self, attempt: int, headers: Mapping[str, str] | None) -> float:
        delay = min(self.backoff_max_s, self.backoff_s * (2 ** attempt))
        retry_after = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
        if retry_after:
            try:
                delay = min(self.backoff_max_s, max(delay, float(retry_after)))
            except ValueError:
                pass
        return delay

    def chat(self, messages: list[dict], max_new_tokens: int = 256) -> str:
        payload = {"model": self.model, "messages": messages, "temperature": self.temperature,
                   "max_tokens": max_new_tokens}
        if self.seed is not None:
            payload["seed"] = self.seed
        body = json.dumps(payload).encode()
        problems: list[str] = []
        for attempt in range(self.max_retries + 1):
            self.calls += 1
            headers: Mapping[str, str] | None = None
            try:
                status, raw, headers = self._post(body)
            except (socket.timeout, TimeoutError) as exc:
                problem = f"timeout after {self.timeout_s:g} s ({type(exc).__name__})"
            except urllib.error.URLError as exc:
                reason = exc.reason
                kind = "timeout" if isinstance(reason, (socket.timeout, TimeoutError)) else "connection error"
                problem = f"{kind}: {reason}"
            except (ConnectionError, OSError) as exc:
                problem = f"connection error: {exc}"
            else:
                if status == 200:
                    try:
                        data = json.loads(raw.decode("utf-8"))
                        content = data["choices"][0]["message"]["content"]
                        if not isinstance(content, str):
                            raise TypeError("content is not a string")
                        return content.strip()
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        problem = f"malformed response ({type(exc).__name__}: {exc}): {raw[:200]!r}"
                elif status in RETRY_STATUS:
                    problem = f"HTTP {status}: {raw[:200]!r}"
                else:
                    raise TeacherError(f"teacher {self.url} answered HTTP {status} (not retried): {raw[:300]!r}")
            problems.append(problem)
            if attempt < self.max_retries:
                delay = self._delay(attempt, headers)
                self.retries += 1
                log.warning("teacher %s: %s; retry %d/%d in %.1f s", self.url, problem, attempt + 1,
                            self.max_retries, delay)
                self._sleep(delay)
        raise TeacherError(f"teacher {self.url} failed after {self.max_retries + 1} attempts: " + " | ".join(problems))

    def close(self) -> None:
        pass


def make_teacher(tcfg: Mapping, seed: int = 0):
    """Build the teacher from the ``teacher`` config group."""
    backend = tcfg["backend"]
    if backend == "openai":
        return OpenAIChatTeacher(model=tcfg.get("model", "gpt-4o-mini"), base_url=tcfg["base_url"],
                                 api_key_env=tcfg.get("api_key_env", "OPENAI_API_KEY"),
                                 timeout_s=float(tcfg.get("timeout_s", 60)), max_retries=int(tcfg.get("max_retries", 5)),
                                 backoff_s=float(tcfg.get("backoff_s", 1.0)),
                                 backoff_max_s=float(tcfg.get("backoff_max_s", 30.0)),
                                 temperature=float(tcfg.get("temperature", 0.0)), seed=seed)
    if backend == "local":
        from kd.pipeline.llm import LocalChatLM

        return LocalChatLM(tcfg["model"], dtype=tcfg.get("dtype", "auto"), device=tcfg.get("device", "auto"))
    raise ValueError(f"teacher.backend must be 'local' or 'openai', got {backend!r}")
