"""Batched chat: ``chat_many`` keeps the input order whatever the batching, and ``LocalChatLM.chat_batch`` gives
the replies one-at-a-time greedy decoding gives (tiny random Llama, fp32)."""

from __future__ import annotations

from pipeline_helpers import smollm_tokenizer_dir, tiny_student  # noqa: F401
from kd.pipeline.chat import chat_many


class Recorder:
    """Batches itself (as ``LocalChatLM`` does) and reports each batch of two."""

    def __init__(self):
        self.calls = 0

    def chat_batch(self, conversations, max_new_tokens, on_batch=None):
        self.calls += 1
        for start in range(0, len(conversations), 2):
            on_batch(len(conversations[start:start + 2]))
        return [c[-1]["content"].upper() for c in conversations]


class Short(Recorder):
    def chat_batch(self, conversations, max_new_tokens, on_batch=None):
        return super().chat_batch(conversations, max_new_tokens, on_batch)[:-1]


class OneByOne:
    def chat(self, messages, max_new_tokens):
        return messages[-1]["content"][::-1]


def test_chat_many_hands_all_conversations_to_chat_batch_once_and_keeps_order():
    convs = [[{"role": "user", "content": "x" * n}] for n in (5, 1, 9, 3, 7)]
    rec = Recorder()
    assert chat_many(rec, convs, 8, desc="test") == ["X" * n for n in (5, 1, 9, 3, 7)]
    assert rec.calls == 1
    assert chat_many(OneByOne(), [[{"role": "user", "content": "ab"}], [{"role": "user", "content": "cd"}]], 8,
                     desc="one by one") == ["ba", "dc"]
    assert chat_many(rec, [], 8) == [] and rec.calls == 1


def test_a_model_that_loses_a_reply_is_an_error_not_a_shifted_list():
    import pytest

    with pytest.raises(RuntimeError, match="returned 1 replies for 2 conversations"):
        chat_many(Short(), [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]], 8)


def test_chat_batch_equals_one_at_a_time(tiny_student):
    from kd.pipeline.llm import LocalChatLM

    lm = LocalChatLM(tiny_student, dtype="float32", device="cpu", batch_size=3)
    convs = [[{"role": "user", "content": q}] for q in
             ("What is a Pod?", "Explain Services in Kubernetes in one sentence please.", "Hi", "What is storage?")]
    one = [lm.chat(c, 6) for c in convs]
    done = []
    assert lm.chat_batch(convs, 6, on_batch=done.append) == one
    assert done == [3, 1]  # batch_size 3: two batches, reported as they finish
    assert any(one)  # the tiny model does say something
