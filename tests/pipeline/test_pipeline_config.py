"""Secrets are redacted from what the pipeline writes; ordinary settings that merely look alike are kept."""

import pytest

from kd.pipeline.config import is_secret_key, redact


@pytest.mark.parametrize("key", ["api_key", "OPENAI_API_KEY", "hf_token", "access_token", "client_secret", "password",
                                 "apikey", "Authorization"])
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_new_tokens_answer", "api_key_env", "tokenizer", "num_tokens", "model"])
def test_ordinary_keys(key):
    assert not is_secret_key(key)


def test_redact_hides_secret_values_and_keeps_generation_lengths():
    cfg = {"teacher": {"api_key": "sk-123", "api_key_env": "OPENAI_API_KEY", "headers": [{"hf_token": "hf_x"}]},
           "generation": {"max_new_tokens_answer": 64}}
    assert redact(cfg) == {"teacher": {"api_key": "***", "api_key_env": "OPENAI_API_KEY",
                                       "headers": [{"hf_token": "***"}]},
                           "generation": {"max_new_tokens_answer": 64}}
