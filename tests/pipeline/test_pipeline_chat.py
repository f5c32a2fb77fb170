"""Batched chat: ``chat_many`` keeps the input order whatever the batching, and ``LocalChatLM.chat_batch`` gives
the replies one-at-a-time greedy decoding gives (tiny random Llama, fp32)."""

from __future__ import annotations

from pipeline_helpers import smollm_tokenizer_dir, tiny_student  # noqa: F401
from kd.pipeline.chat import chat_many


class Recorder:
    def __init__(self, batch_size):
        self.batch_size = batch_size
        self.batches = []

    def chat_batch(self, conversations, max_new_tokens):
        self.batches.append(len(conversations))
        return [c[-1]["content"].upper() for c in conversations]


class OneByOne:
    def chat(self, messages, max_new_tokens):
        return messages[-1]["content"][::-1]


def test_chat_many_keeps_order_and_batches():
    convs = [[{"role": "user", "content": "x" * n}] for n in (5, 1, 9, 3, 7)]
    rec = Recorder(batch_size=2)
    assert chat_many(rec, convs, 8) == ["X" * n for n in (5, 1, 9, 3, 7)]
    assert rec.batches == [2, 2, 1]
    assert chat_many(OneByOne(), [[{"role": "user", "content": "ab"}]], 8) == ["ba"]
    assert chat_many(rec, [], 8) == []


def test_chat_batch_equals_one_at_a_time(tiny_student):
    from kd.pipeline.llm import LocalChatLM

    lm = LocalChatLM(tiny_student, dtype="float32", device="cpu", batch_size=3)
    convs = [[{"role": "user", "content": q}] for q in
             ("What is a Pod?", "Explain Services in Kubernetes in one sentence please.", "Hi", "What is storage?")]
    one = [lm.chat(c, 6) for c in convs]
    assert lm.chat_batch(convs, 6) == one
    assert any(one)  # the tiny model does say something
