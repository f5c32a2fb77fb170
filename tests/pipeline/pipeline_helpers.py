"""Fixtures and helpers for the pipeline tests (imported by the test modules; no conftest.py here, so that
the repository's tests/conftest.py stays the only module named conftest): a real OpenAI-compatible HTTP server on 127.0.0.1, tiny random students,
a small Markdown knowledge base, and a fast pipeline config."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _first_sentence(text: str) -> str:
    m = re.search(r"(.+?\.)(\s|$)", text.strip(), re.S)
    return " ".join((m.group(1) if m else text).split())


def fake_reply(messages: list[dict]) -> str:
    """Deterministic teacher/judge behaviour keyed on the prompt (what a real chat model is asked to do)."""
    user = messages[-1]["content"]
    passage = re.search(r'"""\n(.*?)\n"""', user, re.S)
    if "Write ONE short question" in user:
        words = re.findall(r"[A-Za-z]+", passage.group(1))[:6]
        return f"Question: What does the documentation say about {' '.join(words)}?"
    if "Answer the question in one to three sentences" in user:
        return _first_sentence(passage.group(1))
    if "Generate 3 different questions" in user:
        answer = user.rsplit("Answer:", 1)[1].strip()
        if re.search(r"i don'?t know", answer, re.I):
            return json.dumps({"questions": ["What is unknown?"], "noncommittal": 1})
        if "UNPARSEABLE" in answer:
            return "sorry, I cannot do that"
        words = re.findall(r"[A-Za-z]+", answer)
        qs = [f"What is {' '.join(words[i:i + 4]) or 'this'}?" for i in (0, 4, 8)]
        return json.dumps({"questions": qs, "noncommittal": 0})
    if "Break the answer below into short" in user:
        answer = user.rsplit("Answer:", 1)[1].strip()
        if "UNPARSEABLE" in answer:
            return "the statements are obvious"
        return json.dumps({"statements": [x.strip() for x in re.split(r"(?<=\.)\s+", answer) if x.strip()]})
    if "Compare the answer statements" in user:
        ans = json.loads(re.search(r"Answer statements: (\[.*?\])\n", user).group(1))
        ref = json.loads(re.search(r"Ground-truth statements: (\[.*?\])\n", user).group(1))
        words = lambda t: set(re.findall(r"[a-z]{4,}", t.lower()))  # noqa: E731
        ref_words = set().union(*map(words, ref)) if ref else set()
        ans_words = set().union(*map(words, ans)) if ans else set()
        tp = [a for a in ans if len(words(a) & ref_words) >= 3]
        return json.dumps({"TP": tp, "FP": [a for a in ans if a not in tp],
                           "FN": [r for r in ref if len(words(r) & ans_words) < 3]})
    return "I don't know."


class FakeOpenAI:
    """An OpenAI-compatible server. ``script`` is a list of faults served first: ('status', code, body),
    ('sleep', seconds), ('malformed',); after it runs out, requests get ``fake_reply``."""

    def __init__(self):
        self.script: list[tuple] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    action = outer.script.pop(0) if outer.script else None
                if action and action[0] == "pass":
                    action = None
                if action and action[0] == "sleep":
                    time.sleep(action[1])
                    action = None
                if action and action[0] == "status":
                    payload = action[2].encode()
                    self.send_response(action[1])
                    if action[1] == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if action and action[0] == "malformed":
                    payload = b'{"choices": [ {"message": '
                else:
                    content = fake_reply(body["messages"])
                    payload = json.dumps({"id": "x", "object": "chat.completion",
                                          "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                                       "finish_reason": "stop"}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def openai_server():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture(scope="session")
def smollm_tokenizer_dir():
    from kd.pipeline.models import ModelIntegrityError, resolve_llm

    try:
        return resolve_llm("packaged:smollm2")  # converted once, cached under $KD_CACHE_DIR or ~/.cache/kd
    except ModelIntegrityError as exc:
        pytest.skip(f"the SmolLM2 tokenizer comes from the packaged student: {exc}")


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory, smollm_tokenizer_dir):
    """A 2-layer random Llama with the SmolLM2 tokenizer and chat template, saved to a temp folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-student")
    tok = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False,
                         initializer_range=0.2)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


KB_PAGES = {
    "pods/pod-overview.md": """---
title: Pods
---
# Pods

Pods are the smallest deployable units of computing that you can create and manage in Kubernetes. {{< glossary_tooltip text="Pod" term_id="pod" >}} A Pod is a group of one or more containers with shared storage and network resources.

## Lifecycle

Pods follow a defined lifecycle, starting in the Pending phase, moving through Running if at least one of its primary containers starts OK, and then through either the Succeeded or Failed phases.

{{% note %}}
A restart policy applies to all containers in the Pod and is one of Always, OnFailure and Never.
{{% /note %}}
""",
    "services/service.md": """# Service

A Service is a method for exposing a network application that is running as one or more Pods in your cluster. Each Service gets a stable virtual IP address called the cluster IP.

The set of Pods targeted by a Service is usually determined by a selector that you define. Services of type NodePort expose the Service on each Node's IP at a static port.
""",
    "storage/volumes.md": """# Volumes

A PersistentVolume is a piece of storage in the cluster that has been provisioned by an administrator or dynamically provisioned using Storage Classes. It is a resource in the cluster just like a node is a cluster resource.

A PersistentVolumeClaim is a request for storage by a user. It is similar to a Pod: Pods consume node resources and PersistentVolumeClaims consume PersistentVolume resources.

An emptyDir volume is first created when a Pod is assigned to a node, and exists as long as that Pod is running on that node. When a Pod is removed from a node for any reason, the data in the emptyDir is deleted permanently.
""",
}


@pytest.fixture(scope="session")
def kb_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("kb")
    for rel, text in KB_PAGES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return str(root)


def fast_overrides(run_dir, tiny_student: str, server_url: str, kb_dir: str, **over) -> list[str]:
    """Hydra overrides for a fast run: tiny student, the API teacher on the local server, short generations."""
    overrides = ["pipeline/teacher=openai", f"teacher.base_url={server_url}", "teacher.backoff_s=0.01",
                 "teacher.timeout_s=10", f"student.model={tiny_student}", f"run_dir={run_dir}", f"kb.source={kb_dir}",
                 "kb.min_chars=40", "kb.max_chars=300", "cycles=2", "questions_per_cycle=2", "progress=false",
                 "generation.max_new_tokens_answer=12", "finetune.epochs=2", "finetune.batch_size=2",
                 "finetune.max_length=96", "threads=1", "eval.heldout_per_topic=1", "eval.bootstrap_resamples=200"]
    return overrides + [f"{k}={v}" for k, v in over.items()]


def fast_config(run_dir, tiny_student: str, server_url: str, kb_dir: str, **over) -> dict:
    """conf/pipeline.yaml composed through Hydra with ``fast_overrides``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    overrides = fast_overrides(run_dir, tiny_student, server_url, kb_dir, **over)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture
def make_config(tiny_student, openai_server, kb_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-0123456789")

    def make(run_dir, **over):
        return fast_config(run_dir, tiny_student, openai_server.url, kb_dir, **over)

    return make
