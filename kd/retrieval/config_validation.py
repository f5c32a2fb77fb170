"""Check a composed ``kd-train`` config before anything is loaded: wrong types, out-of-range values and
impossible combinations are refused with the offending key named.

Unknown keys never get this far: Hydra's configs are in struct mode, so ``kd-train loss.kl_wieght=1`` already
fails with "Key 'kl_wieght' is not in struct" (add new keys explicitly with ``+key=value``).

Every check is a row of ``FIELDS``: dotted key -> ``Field`` (type, bounds, whether null is allowed).
Command-line values arrive as Hydra parses them (``1`` int, ``1.0`` float, ``true`` bool, ``abc`` str), so
``loss.kl_weight=abc`` and ``data.batch_size=4.5`` are caught here, not deep inside PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kd.errors import ConfigError


@dataclass(frozen=True)
class Field:
    """``kind``: int | float | bool | choice; ``low``/``high`` inclusive bounds; ``positive``: > 0."""

    kind: str
    low: float | None = None
    high: float | None = None
    positive: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if value is None:
            return None if self.nullable else "must be set (got null)"
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false, got {value!r} ({type(value).__name__})"
        if self.kind == "float_or_auto" and value == "auto":
            return None
        if self.kind == "choice":
            return None if value in self.choices else f"must be one of {', '.join(self.choices)}; got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            noun = {"int": "an integer", "float_or_auto": "a number or auto"}.get(self.kind, "a number")
            return f"must be {noun}, got {value!r} ({type(value).__name__})"
        if self.kind == "int" and not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        if self.positive and not value > 0:
            return f"must be > 0, got {value}"
        if self.low is not None and value < self.low:
            return f"must be >= {self.low:g}, got {value}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g}, got {value}"
        return None


def Int(low=None, high=None, nullable=False) -> Field:  # noqa: N802 - reads like a type in the table below
    return Field("int", low=low, high=high, nullable=nullable)


def Float(low=None, high=None, positive=False, nullable=False) -> Field:  # noqa: N802
    return Field("float", low=low, high=high, positive=positive, nullable=nullable)


BOOL = Field("bool")

FIELDS: dict[str, Field] = {
    "seed": Int(low=0),
    "eval_before": BOOL,
    "save_student": BOOL,
    "data.num_negatives": Int(low=0),
    "data.mined_negatives": Int(low=0),
    "data.mining": Field("choice", choices=("none", "bm25", "dense", "teacher")),
    "data.mining_depth": Int(low=1),
    "data.teacher_filter": BOOL,
    "data.false_negative_margin": Float(),
    "data.batch_size": Int(low=1),
    "data.eval_batch_size": Int(low=1),
    "data.num_workers": Int(low=0),
    "data.max_train_queries": Int(low=1, nullable=True),
    "data.max_eval_queries": Int(low=1, nullable=True),
    "data.corpus_size": Int(low=1, nullable=True),
    "data.synthetic_max": Int(low=0, nullable=True),
    "data.synthetic_ratio": Float(low=0, nullable=True),
    "data.pretokenize": BOOL,
    "data.length_buckets": BOOL,
    "data.doc_group_size": Int(low=1, nullable=True),
    "loss.kl_weight": Float(low=0),
    "loss.contrastive_weight": Float(low=0),
    "loss.penalty_weight": Float(low=0),
    "loss.student_temperature": Float(positive=True),
    "loss.teacher_temperature": Field("float_or_auto", positive=True),
    "loss.margin_mse_weight": Float(low=0),
    "data.dev_fraction": Float(low=0, high=0.9),
    "teacher.audit": BOOL,
    "teacher.audit_depth": Int(low=2),
    "teacher.require_better": BOOL,
    "loss.penalty_margin": Float(low=-1, high=1),
    "loss.false_negative_margin": Float(nullable=True),
    "loss.kl_gate": BOOL,
    "loss.grad_cache_chunk": Int(low=1, nullable=True),
    "optim.lr": Float(positive=True),
    "optim.weight_decay": Float(low=0),
    "optim.warmup_ratio": Float(low=0, high=1),
    "optim.on_nonfinite": Field("choice", choices=("stop", "skip")),
    "student.max_length": Int(low=1),
    "student.gradient_checkpointing": BOOL,
    "teacher.max_length": Int(low=1),
    "teacher.score_batch_size": Int(low=1),
    "teacher.cache": BOOL,
    "trainer.max_epochs": Int(low=1),
    "checkpoint.every_n_train_steps": Int(low=1, nullable=True),
}


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming every offending key of ``cfg`` (all problems at once, one per line)."""
    problems = []
    for key, field in FIELDS.items():
        if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue  # an option that does not have this key (e.g. teacher=ms_marco has no training settings)
        problem = field.problem(OmegaConf.select(cfg, key))
        if problem:
            problems.append(f"{key} {problem}")
    if not problems:
        problems = combination_problems(cfg)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))


def combination_problems(cfg: DictConfig) -> list[str]:
    """Settings that are fine alone but impossible together."""
    problems = []
    data, loss = cfg.data, cfg.loss
    if data.mined_negatives > data.num_negatives:
        problems.append(f"data.mined_negatives={data.mined_negatives} exceeds data.num_negatives={data.num_negatives}")
    if loss.kl_weight == loss.contrastive_weight == loss.penalty_weight == loss.get("margin_mse_weight", 0) == 0:
        problems.append("loss.kl_weight, loss.contrastive_weight, loss.penalty_weight and loss.margin_mse_weight are "
                        "all 0: nothing to train")
    strategy = str(cfg.get("trainer", {}).get("strategy", ""))
    if loss.get("grad_cache_chunk") is not None and ("ddp" in strategy or "fsdp" in strategy):
        problems.append(f"loss.grad_cache_chunk={loss.grad_cache_chunk} is single-process only; with "
                        f"trainer.strategy={strategy} set loss.grad_cache_chunk=null")
    if data.corpus_size is not None and data.num_negatives >= data.corpus_size:
        problems.append(f"data.num_negatives={data.num_negatives} needs a corpus larger than "
                        f"data.corpus_size={data.corpus_size}")
    return problems
