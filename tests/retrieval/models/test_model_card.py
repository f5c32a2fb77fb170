"""The model card written beside a distilled student names its config, teacher, data and before/after metrics."""

from omegaconf import OmegaConf

from kd.retrieval.models.model_card import model_card, write_model_card

RESULTS = {
    "before": {"ndcg@10": 0.5, "recall@10": 0.6, "recall@100": 0.9, "mrr@10": 0.45},
    "after": {"ndcg@10": 0.625, "recall@10": 0.7, "recall@100": 0.95, "mrr@10": 0.55},
    "teacher": "/cache/teachers/abc123",
    "data": {"docs": 32, "train_queries": 8, "eval_queries": 8, "train_examples": 8},
    "resources": {"precision_student": "32-true", "precision_teacher": "fp32", "train_steps": 12},
}


def _cfg(**teacher):
    return OmegaConf.create({
        "seed": 42,
        "student": {"name_or_path": "packaged:minilm", "max_length": 256},
        "teacher": {"name_or_path": None, "train": {"base_model": "packaged:minilm"}, **teacher},
        "data": {"format": "scifact", "path": "/data/scifact.zip", "train_split": "train", "eval_split": "test",
                 "batch_size": 16, "num_negatives": 3},
        "loss": {"kl_weight": 1.0, "contrastive_weight": 1.0, "penalty_weight": 0.1, "temperature": 0.05},
        "optim": {"lr": 2e-5, "weight_decay": 0.01, "warmup_ratio": 0.1},
        "trainer": {"max_epochs": 1},
    })


def test_card_has_front_matter_config_teacher_data_and_before_after_metrics(tmp_path):
    path = write_model_card(tmp_path / "student", _cfg(), RESULTS)
    card = path.read_text()
    assert path == tmp_path / "student" / "README.md"
    assert card.startswith("---\nlibrary_name: sentence-transformers\n")
    assert "**Base student:** `packaged:minilm`" in card
    assert "trained by kd from `packaged:minilm`" in card and "/cache/teachers/abc123" in card
    assert "`scifact` from `/data/scifact.zip`" in card and "32 docs" in card
    assert "kl_weight=1.0" in card and "max_seq_length 256" in card
    assert "| student before distillation | 0.5000 | 0.6000 | 0.9000 | 0.4500 |" in card
    assert "| student after distillation | 0.6250 | 0.7000 | 0.9500 | 0.5500 |" in card
    assert "temperature: 0.05" in card  # the full resolved config is in the card
    assert [p.name for p in (tmp_path / "student").iterdir()] == ["README.md"]  # no temporary file left


def test_card_names_a_published_teacher_and_copes_without_before_metrics():
    card = model_card(_cfg(name_or_path="cross-encoder/ms-marco-MiniLM-L-6-v2"), {**RESULTS, "before": None})
    assert "cross-encoder `cross-encoder/ms-marco-MiniLM-L-6-v2`" in card
    assert "student before distillation" not in card and "| student after distillation | 0.6250" in card
