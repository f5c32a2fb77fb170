"""Shared fixtures: a tiny random BERT (with the packaged MiniLM tokenizer) and a tiny BEIR data set.

Everything here is built offline in a temporary folder in a second or two, so unit tests never need the
22M-parameter models; the slow end-to-end tests use the packaged models themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Under pytest-xdist (setup.cfg runs 2 workers) each worker gets its share of the cores: oversubscribed torch threads
# slow every test down. A test's own subprocess (the main job) still takes torch's default.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))

REPO = Path(__file__).resolve().parents[1]

TOPICS = [
    ("q1", "apple orchards harvest", "d1", "apple orchards bring a large harvest in autumn"),
    ("q2", "volcano lava eruption", "d2", "a volcano erupts and lava flows down the mountain"),
    ("q3", "chess opening gambit", "d3", "the queen gambit is a famous chess opening"),
    ("q4", "glacier ice melting", "d4", "glacier ice is melting faster every summer"),
    ("q5", "violin concerto soloist", "d5", "the soloist played a violin concerto"),
    ("q6", "rocket launch orbit", "d6", "the rocket launch put a satellite in orbit"),
    ("q7", "coffee bean roasting", "d7", "roasting the coffee bean brings out its flavour"),
    ("q8", "penguin colony antarctica", "d8", "a penguin colony lives on the antarctica coast"),
    ("q9", "bread yeast dough", "d9", "yeast makes the bread dough rise"),
    ("q10", "tennis serve racket", "d10", "a fast tennis serve needs a light racket"),
    ("q11", "desert camel water", "d11", "a camel crosses the desert with little water"),
    ("q12", "printer ink cartridge", "d12", "the printer needs a new ink cartridge"),
]
FILLER = [f"unrelated filler text number {i} about nothing in particular" for i in range(20)]


def make_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    """Save a BERT with random weights (``hidden`` wide, ``layers`` deep) and the MiniLM tokenizer to ``folder``."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from kd.packaged_models import packaged_model_dir

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_dir("minilm"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the MiniLM tokenizer, saved to a folder."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _tiny_corpus() -> dict[str, tuple[str, str]]:
    corpus = {d: ("", text) for _, _, d, text in TOPICS}
    corpus.update({f"f{i}": ("", text) for i, text in enumerate(FILLER)})
    return corpus


@pytest.fixture(scope="session")
def tiny_beir_dir(tmp_path_factory) -> Path:
    """A BEIR folder: 12 topical queries, each with one relevant doc, plus 20 filler docs.

    Split ``train`` holds q1..q8 and ``test`` q9..q12 (and q1..q4 again, so a trained student can be checked).
    """
    from kd.retrieval.data.beir import write_beir

    folder = tmp_path_factory.mktemp("tiny-beir")
    queries = {q: text for q, text, _, _ in TOPICS}
    train = {q: {d: 1} for q, _, d, _ in TOPICS[:8]}
    test = {q: {d: 1} for q, _, d, _ in TOPICS[8:] + TOPICS[:4]}
    write_beir(folder, _tiny_corpus(), queries, {"train": train, "test": test})
    return folder


@pytest.fixture(scope="session")
def tiny_splits(tiny_beir_dir):
    from kd.retrieval.data.sources import load_retrieval_data

    return load_retrieval_data("beir", str(tiny_beir_dir))


# the two longest tests (~10 min each on 2 cores), started first and on different xdist workers
LONGEST = ("tests/retrieval/test_run_main_job_slow.py", "tests/pipeline/test_pipeline_e2e_slow.py")


def pytest_collection_modifyitems(config, items):
    """The longest tests first, then the other slow ones, then the rest (collection order within each).

    With ``--dist loadgroup`` (setup.cfg) xdist hands out one test at a time in this order, so with 2 workers each
    starts on one of the two longest tests. (``--dist load`` sends contiguous chunks: both landed on one worker,
    which ran them one after the other while the other worker sat idle.)
    """
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        if path in LONGEST:
            return LONGEST.index(path)
        return len(LONGEST) + (item.get_closest_marker("slow") is None)

    items.sort(key=rank)
