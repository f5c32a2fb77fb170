"""Frozen teachers behind one interface: ``score(queries, documents) -> float32 [N]``, higher = more relevant.

| ``teacher=``        | kind           | scores                                  | offline default                      |
|---------------------|----------------|-----------------------------------------|--------------------------------------|
| ``cross_encoder``   | pair scorer    | sigmoid of a cross-encoder's logit      | trained by kd from ``packaged:minilm`` |
| ``bi_encoder``      | corpus teacher | cosine of a larger frozen embedder      | ``packaged:mpnet`` (all-mpnet-base-v2) |
| ``bm25``            | corpus teacher | BM25                                    | ``bm25s``                            |
| ``ensemble``        | corpus teacher | weighted fusion of per-query normalised member scores | BM25 + all-MiniLM-L6-v2 (frozen) |

``build_teacher`` makes the configured one; kd's score cache, negative filter, audit and losses only call
``score``. Scales differ (probabilities, cosines, z-scores): the dev-split calibration in
``kd.retrieval.teacher_audit`` maps each onto the student's logit scale before the KL / Margin-MSE terms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kd.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("cross_encoder", "bi_encoder", "bm25", "ensemble")
MEMBER_KINDS = ("bi_encoder", "bm25")


@dataclass
class BuiltTeacher:
    """The frozen teacher, its score-cache identity and what was decided while building it (e.g. fusion)."""

    teacher: Any
    kind: str
    identity: dict
    description: str
    info: dict = field(default_factory=dict)


def _member(name: str, cfg: Mapping[str, Any], cache_dir: str | Path | None, where: str):
    kind = cfg.get("kind")
    if kind not in MEMBER_KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(MEMBER_KINDS)} for an ensemble member, got {kind!r}")
    if kind == "bm25":
        from kd.retrieval.teachers.bm25 import BM25Teacher

        return BM25Teacher(k1=float(cfg.get("k1", 1.5)), b=float(cfg.get("b", 0.75)))
    from kd.retrieval.teachers.bi_encoder import BiEncoderTeacher

    if not cfg.get("name_or_path"):
        raise ConfigError(f"{where}.name_or_path must be set (e.g. packaged:mpnet) for a bi_encoder member")
    return BiEncoderTeacher(str(cfg["name_or_path"]), max_length=int(cfg.get("max_length", 256)), cache_dir=cache_dir,
                            batch_size=int(cfg.get("batch_size", 32)))


def check_teacher_config(cfg: Mapping[str, Any]) -> None:
    """Refuse a bad teacher config at start-up, naming the key (unknown kind or member, weights vs members)."""
    kind = cfg.get("kind", "cross_encoder")
    if kind not in KINDS:
        raise ConfigError(f"teacher.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "ensemble":
        return
    members = cfg.get("members") or {}
    if not members:
        raise ConfigError("teacher.members is empty: an ensemble of nothing (give at least one member)")
    for name, member in members.items():
        if not isinstance(member, Mapping) or member.get("kind") not in MEMBER_KINDS:
            got = member.get("kind") if isinstance(member, Mapping) else member
            raise ConfigError(f"teacher.members.{name}.kind must be one of {', '.join(MEMBER_KINDS)}, got {got!r}")
    weights = cfg.get("weights", "auto")
    if weights != "auto":
        if not isinstance(weights, Mapping):
            raise ConfigError(f"teacher.weights must be 'auto' or a mapping member -> weight, got {weights!r}")
        if set(weights) != set(members):
            raise ConfigError(f"teacher.weights names {sorted(weights)} but teacher.members has {sorted(members)}")
        for name, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"teacher.weights.{name} must be a number >= 0, got {value!r}")
        if not any(float(v) > 0 for v in weights.values()):
            raise ConfigError("teacher.weights are all 0: the ensemble would score nothing")
    method = cfg.get("method", "auto")
    if method not in ("auto", "zscore", "rrf"):
        raise ConfigError(f"teacher.method must be auto, zscore or rrf, got {method!r}")


def build_teacher(cfg: Mapping[str, Any], splits, dev, cache_dir: str | Path, seed: int, precision: str = "fp32",
                  accelerator: str = "cpu") -> BuiltTeacher:
    """Make the frozen teacher of ``cfg`` (a ``conf/teacher`` mapping) for ``splits`` (dev queries removed).

    A cross-encoder is loaded (or trained first, ``kd.retrieval.teacher_training``); corpus teachers are indexed
    on ``splits.corpus``; an ensemble with ``weights: auto`` / ``method: auto`` picks them on ``dev``.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    check_teacher_config(cfg)
    kind = cfg.get("kind", "cross_encoder")
    if kind == "cross_encoder":
        from kd.retrieval.models.cross_encoder import CrossEncoder
        from kd.retrieval.teacher_cache import cross_encoder_identity
        from kd.retrieval.teacher_training import ensure_teacher

        path = ensure_teacher(cfg, splits, cache_dir, seed=seed, dev=dev)
        teacher = CrossEncoder.load(path, max_length=cfg["max_length"], precision=precision, accelerator=accelerator)
        identity = cross_encoder_identity(path, precision, cfg["max_length"])
        return BuiltTeacher(teacher, kind, identity, f"cross-encoder {path}", {"path": path})
    if precision != "fp32":  # e.g. a precision sweep (conf/hparams_search/loss_grid) with a corpus teacher
        log.warning("teacher precision %s applies to cross-encoder teachers only; teacher=%s scores in fp32",
                    precision, kind)
    if kind == "ensemble":
        from kd.retrieval.teachers.ensemble import EnsembleTeacher

        members = {name: _member(name, member, cache_dir, f"teacher.members.{name}")
                   for name, member in cfg["members"].items()}
        weights = cfg.get("weights", "auto")
        method = cfg.get("method", "auto")
        teacher = EnsembleTeacher(members, {n: 1.0 for n in members} if weights == "auto" else dict(weights),
                                  method="zscore" if method == "auto" else method, depth=int(cfg.get("depth", 100)))
        teacher.index(splits.corpus)
        info: dict = {}
        if weights == "auto" or method == "auto":
            if dev is None:
                raise ConfigError("teacher.weights=auto / teacher.method=auto choose the fusion on the dev split: "
                                  "set data.dev_fraction > 0, or give teacher.weights and teacher.method")
            from kd.retrieval.teacher_audit import select_fusion

            info["fusion"] = select_fusion(teacher, splits.corpus, dev)
        description = f"ensemble ({teacher.method}: " + ", ".join(
            f"{n} {w:g}" for n, w in teacher.weights.items()) + ")"
        return BuiltTeacher(teacher.freeze(), kind, teacher.identity(), description, info)
    member = _member(kind, cfg, cache_dir, "teacher")
    member.index(splits.corpus)
    name = cfg.get("name_or_path") or "bm25"
    return BuiltTeacher(member.freeze(), kind, member.identity(), f"{kind} {name}")
