"""The model card (``README.md``) of a distilled student folder: what it was trained from, on what, and how well.

``write_model_card(folder, cfg, results)`` is called by ``kd-train`` after the before/after metrics are known; the
card names the base student, the teacher, the data, the recipe (loss weights, optimiser, epochs, precision), the
before/after retrieval metrics, how to load the folder (sentence-transformers or kd) and the full resolved config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from kd.io import atomic_write_text

CARD_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def _get(cfg: DictConfig, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, key, default=default, throw_on_missing=False)
    return default if value is None else value


def _teacher_line(cfg: DictConfig, results: Mapping[str, Any]) -> str:
    named = _get(cfg, "teacher.name_or_path")
    used = results.get("teacher")
    if named:
        return f"cross-encoder `{named}`" + (f" (loaded from `{used}`)" if used and str(used) != str(named) else "")
    base = _get(cfg, "teacher.train.base_model", "?")
    return (f"cross-encoder trained by kd from `{base}` on the data's labelled training pairs "
            f"(`kd/retrieval/teacher_training.py`; cached at `{used}`)")


def _metrics_table(results: Mapping[str, Any]) -> str:
    rows = [("student before distillation", results.get("before") or {}),
            ("student after distillation", results.get("after") or {})]
    rows = [(label, values) for label, values in rows if values]
    if not rows:
        return "_No metrics were recorded._"
    names = [m for m in CARD_METRICS if any(m in values for _, values in rows)]
    names += sorted({k for _, values in rows for k in values} - set(names))
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, values in rows:
        cells = [f"{float(values[m]):.4f}" if m in values else "" for m in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_card(cfg: DictConfig, results: Mapping[str, Any], folder: str = "path/to/student") -> str:
    """The card's Markdown text for a student distilled with ``cfg`` that reached ``results`` (``metrics.json``)."""
    base = _get(cfg, "student.name_or_path", "?")
    max_length = _get(cfg, "student.max_length", 256)
    data = results.get("data") or {}
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in data.items())
    data_line = (f"`{_get(cfg, 'data.format', '?')}` from `{_get(cfg, 'data.path', '?')}` "
                 f"(train split `{_get(cfg, 'data.train_split', '?')}`, evaluated on `{_get(cfg, 'data.eval_split', '?')}`"
                 + (f"; {counts}" if counts else "") + ")")
    loss = _get(cfg, "loss", {})
    loss_line = ", ".join(f"{k}={v}" for k, v in (OmegaConf.to_container(loss, resolve=True) if loss else {}).items())
    resources = results.get("resources") or {}
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True) if isinstance(cfg, DictConfig) else ""
    eval_queries = data.get("eval_queries", "?")
    docs = data.get("docs", "?")
    return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags:
- sentence-transformers
- feature-extraction
- sentence-similarity
- knowledge-distillation
- kd
---

# Distilled bi-encoder (kd)

A sentence-transformers model (Transformer -> mean pooling -> L2 normalisation, cosine similarity,
max_seq_length {max_length}) distilled by kd (knowledge distillation on PyTorch Lightning + Hydra) from a cross-encoder teacher.

- **Base student:** `{base}`
- **Teacher:** {_teacher_line(cfg, results)}
- **Data:** {data_line}
- **Loss:** {loss_line or "?"}
- **Optimiser:** lr={_get(cfg, "optim.lr", "?")}, weight_decay={_get(cfg, "optim.weight_decay", "?")}, \
warmup_ratio={_get(cfg, "optim.warmup_ratio", "?")}; epochs={_get(cfg, "trainer.max_epochs", "?")}, \
batch size={_get(cfg, "data.batch_size", "?")}, negatives per query={_get(cfg, "data.num_negatives", "?")}, \
seed={_get(cfg, "seed", "?")}
- **Precision:** student {resources.get("precision_student", _get(cfg, "precision.student", "?"))}, \
teacher {resources.get("precision_teacher", _get(cfg, "precision.teacher", "?"))}; \
{resources.get("train_steps", "?")} training steps

## Retrieval metrics

On {eval_queries} evaluation queries over {docs} documents (FAISS `{_get(cfg, 'index.kind', 'flat')}` index, cosine):

{_metrics_table(results)}

## Usage

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{folder}")
embeddings = model.encode(["a query", "a document"])  # unit vectors: dot product = cosine
```

or with kd: `from kd.retrieval.models.bi_encoder import BiEncoder; BiEncoder("{folder}").encode([...])`
(the same embeddings).

## Training config (resolved)

```yaml
{config_yaml.rstrip()}
```
"""


def write_model_card(folder: str | Path, cfg: DictConfig, results: Mapping[str, Any]) -> Path:
    """Write ``<folder>/README.md`` (atomically) for the student saved in ``folder``; returns its path."""
    path = Path(folder) / "README.md"
    atomic_write_text(path, model_card(cfg, results))
    return path
