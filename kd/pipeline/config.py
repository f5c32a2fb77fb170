"""Pipeline configuration: validation at start-up (offending key named), the config hash, secret redaction."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any, Mapping

from kd.errors import ConfigError

# Keys that do not change results: excluded from the hash so that a resume with another run_dir spelling,
# resume=true, a crash hook, or different network timeouts is still the same run.
NON_SEMANTIC_KEYS = (
    "run_dir", "resume", "debug", "progress", "threads",
    "teacher.timeout_s", "teacher.max_retries", "teacher.backoff_s", "teacher.backoff_max_s", "teacher.api_key_env",
)
SECRET_WORDS = ("token", "secret", "password", "apikey", "authorization")  # whole words of a key name


def to_plain(cfg: Any) -> dict:
    """OmegaConf DictConfig (resolved) or mapping -> plain dict."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return copy.deepcopy(dict(cfg))


def _get(cfg: Mapping, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _drop(cfg: dict, dotted: str) -> None:
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(parts[-1], None)


def is_secret_key(key: str) -> bool:
    """``api_key``, ``hf_token``, ``client_secret`` ... are secrets; ``max_new_tokens_*`` and ``*_env`` (the name
    of the variable holding the secret) are not."""
    words = re.split(r"[^a-z0-9]+", key.lower())
    if words[-1] == "env":
        return False
    joined = ["".join(words[i:i + 2]) for i in range(len(words) - 1)]
    return any(w in SECRET_WORDS for w in words) or "apikey" in joined


def redact(obj: Any) -> Any:
    """Copy of ``obj`` with any value under a secret-looking key (``api_key``, ``token`` ...) replaced."""
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            secret = is_secret_key(str(k))
            out[k] = "***" if secret and v not in (None, "") else redact(v)
        return out
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def semantic_config(cfg: Mapping) -> dict:
    plain = copy.deepcopy(dict(cfg))
    for key in NON_SEMANTIC_KEYS:
        _drop(plain, key)
    return redact(plain)


def config_hash(cfg: Mapping) -> str:
    blob = json.dumps(semantic_config(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_diff(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs."""
    keys = sorted(set(old) | set(new))
    diffs = []
    for k in keys:
        path = f"{prefix}{k}"
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs.extend(config_diff(a, b, path + "."))
        elif a != b:
            diffs.append(f"{path}: {a!r} -> {b!r}")
    return diffs


def _int(cfg: Mapping, key: str, lo: int = 1) -> None:
    v = _get(cfg, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{key} must be an integer >= {lo}, got {v!r}")


def _num(cfg: Mapping, key: str, lo: float, hi: float) -> None:
    v = _get(cfg, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ConfigError(f"{key} must be a number in [{lo}, {hi}], got {v!r}")


def _choice(cfg: Mapping, key: str, choices: tuple) -> None:
    v = _get(cfg, key)
    if v not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {v!r}")


KNOWN_KEYS: dict[str, set[str] | None] = {  # section -> allowed keys (None: free-form)
    "": {"teacher", "student", "cycles", "questions_per_cycle", "topics", "seed", "run_dir", "resume", "progress",
         "threads", "kb", "generation", "relevancy", "finetune", "debug", "eval", "correctness"},
    "teacher": {"backend", "model", "dtype", "device", "base_url", "api_key_env", "api_key", "timeout_s",
                "max_retries", "backoff_s", "backoff_max_s", "temperature"},
    "student": {"model", "dtype", "device"},
    "kb": {"source", "max_chars", "min_chars", "aliases"},
    "generation": {"batch_size", "max_new_tokens_question", "max_new_tokens_reference", "max_new_tokens_answer",
                   "max_new_tokens_judge", "max_new_tokens_correctness"},
    "eval": {"heldout_per_topic", "near_duplicate_cosine", "bootstrap_resamples"},
    "correctness": {"weights"},
    "relevancy": {"k", "threshold", "embedding_model"},
    "finetune": {"quantization", "min_gpu_free_gb", "precision", "lora_r", "lora_alpha", "lora_dropout",
                 "target_modules", "epochs", "batch_size", "lr", "weight_decay", "grad_clip", "max_length",
                 "gradient_checkpointing"},
    "debug": {"crash_after", "crash_mode"},
}


def _check_keys(cfg: Mapping) -> None:
    for section, allowed in KNOWN_KEYS.items():
        node = cfg if not section else cfg.get(section)
        if node is None or allowed is None:
            continue
        if not isinstance(node, Mapping):
            raise ConfigError(f"{section} must be a mapping, got {type(node).__name__}")
        unknown = sorted(set(node) - allowed)
        if unknown:
            where = ", ".join(f"{section + '.' if section else ''}{k}" for k in unknown)
            raise ConfigError(f"unknown config key(s): {where}; known: {sorted(allowed)}")


def validate(cfg: Mapping, cuda_available: bool | None = None) -> None:
    """Refuse unknown keys, bad values and impossible combinations, naming the key."""
    _check_keys(cfg)
    for key in ("cycles", "questions_per_cycle", "relevancy.k", "finetune.epochs", "finetune.batch_size",
                "finetune.max_length", "finetune.lora_r", "generation.max_new_tokens_answer",
                "generation.max_new_tokens_question", "generation.max_new_tokens_judge",
                "generation.max_new_tokens_reference"):
        _int(cfg, key)
    _int(cfg, "seed", lo=0)
    for key, lo in (("generation.batch_size", 1), ("generation.max_new_tokens_correctness", 1),
                    ("eval.heldout_per_topic", 0), ("eval.bootstrap_resamples", 100)):
        if _get(cfg, key) is not None:
            _int(cfg, key, lo=lo)
    if _get(cfg, "eval.near_duplicate_cosine") is not None:
        _num(cfg, "eval.near_duplicate_cosine", 0.0, 1.0)
    weights = _get(cfg, "correctness.weights")
    if weights is not None and (not isinstance(weights, list) or len(weights) != 2 or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) or sum(weights) <= 0):
        raise ConfigError(f"correctness.weights must be two non-negative numbers [statement_f1, similarity] with a "
                          f"positive sum, got {weights!r}")
    topics = _get(cfg, "topics")
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) and t for t in topics):
        raise ConfigError(f"topics must be a non-empty list of names, got {topics!r}")
    _num(cfg, "relevancy.threshold", 0.0, 1.0)
    _num(cfg, "finetune.lr", 1e-12, 1.0)
    _choice(cfg, "teacher.backend", ("local", "openai"))
    _choice(cfg, "finetune.quantization", ("auto", "nf4", "none"))
    _choice(cfg, "finetune.precision", ("auto", "32-true", "bf16-mixed", "bf16-true"))
    if not _get(cfg, "run_dir"):
        raise ConfigError("run_dir must be set")
    if _get(cfg, "teacher.api_key") not in (None, ""):
        raise ConfigError("teacher.api_key must not be put in the config (it would be written to disk); "
                          "export it in the variable named by teacher.api_key_env (default OPENAI_API_KEY)")
    if _get(cfg, "teacher.backend") == "openai":
        base = str(_get(cfg, "teacher.base_url", ""))
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"teacher.base_url must be an http(s) URL, got {base!r}")
    if _get(cfg, "finetune.quantization") == "nf4":
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available()
        if not cuda_available:
            raise ConfigError("finetune.quantization=nf4 needs a CUDA GPU (bitsandbytes 4-bit on CPU silently stops "
                              "LoRA gradients on this CPU); use finetune.quantization=auto or none")
