"""kd-generate-queries on the tiny BEIR set: sampling without test positives, the round-trip filter, resumable
shards, the manifest, and one clear error (nothing written) for bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import kd.config  # noqa: F401
from kd.errors import ConfigError, DataFormatError
from kd.retrieval.synthetic.generate import (MANIFEST_FILE, QUERIES_FILE, SHARD_DIR, choose_documents,
                                             run_generation, eval_positive_documents)

CONF = str(Path(__file__).resolve().parents[3] / "conf")
TEST_POSITIVES = {"d9", "d10", "d11", "d12", "d1", "d2", "d3", "d4"}  # tests/conftest.py: test = q9..q12 + q1..q4


class FakeLLM:
    """Writes two on-topic queries (the document's first and last words) and one off-topic one per document."""

    def __init__(self, fail_after_calls: int | None = None, batched: bool = True):
        self.documents: list[str] = []
        self.fail_after_calls = fail_after_calls
        if not batched:
            self.chat_batch = None  # not callable: the fallback calls chat once per document

    def _reply(self, messages):
        document = re.search(r'"""\n(.*?)\n"""', messages[-1]["content"], re.S).group(1)
        self.documents.append(document)
        words = document.split()
        return (f"1. {' '.join(words[:4])} is true.\n2. Is it {' '.join(words[-3:])}?\n"
                "3. Nothing in particular about unrelated filler.")

    def chat(self, messages, max_new_tokens=128):
        return self._reply(messages)

    def chat_batch(self, conversations, max_new_tokens=128, on_batch=None):
        if self.fail_after_calls is not None:
            if self.fail_after_calls == 0:
                raise KeyboardInterrupt("killed")
            self.fail_after_calls -= 1
        return [self._reply(m) for m in conversations]


def compose_cfg(beir_dir, out_dir, cache_dir, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="generate_queries", overrides=[
            "data=beir", f"data.path={beir_dir}", "teacher@filter.teacher=bm25", "filter.top_k=1", "k=3",
            f"out_dir={out_dir}", f"paths.cache_dir={cache_dir}", "progress=false", *overrides])


def test_sample_never_holds_a_test_positive_and_is_seeded(tiny_splits):
    excluded = eval_positive_documents(tiny_splits.eval_qrels)
    assert excluded == TEST_POSITIVES
    first = choose_documents(tiny_splits.corpus, excluded, 10, seed=3)
    assert len(first) == 10 and not set(first) & excluded
    assert first == choose_documents(tiny_splits.corpus, excluded, 10, seed=3)
    assert first != choose_documents(tiny_splits.corpus, excluded, 10, seed=4)
    assert sorted(choose_documents(tiny_splits.corpus, excluded, 1000, seed=3)) == sorted(
        set(tiny_splits.corpus) - excluded)


@pytest.mark.parametrize("sample, doc_ids, message", [
    (0, None, "sample must be a number of documents >= 1, got 0: an empty corpus sample"),
    (5, ["d5", "nope"], "doc_ids: document id 'nope' is not in the corpus"),
    (5, ["d9"], "doc_ids: document 'd9' is a positive of a test query"),
])
def test_bad_sample_is_refused_with_one_line(tiny_splits, sample, doc_ids, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        choose_documents(tiny_splits.corpus, TEST_POSITIVES, sample, 0, doc_ids)
    with pytest.raises(ConfigError, match="an empty corpus sample"):
        choose_documents({"d1": "x"}, {"d1"}, 5, 0)


def test_two_documents_generate_filter_and_write_queries_and_manifest(tiny_beir_dir, tmp_path):
    cfg = compose_cfg(tiny_beir_dir, tmp_path / "gen", tmp_path / "cache", "doc_ids=[d5,d6]", "shard_size=1")
    llm = FakeLLM()
    manifest = run_generation(cfg, llm=llm)
    assert len(llm.documents) == 2
    kept = [json.loads(line) for line in (tmp_path / "gen" / QUERIES_FILE).read_text().splitlines()]
    # the two on-topic queries of each document find it first with BM25; the filler query does not
    assert [(q["_id"], q["doc_id"], q["rank"]) for q in kept] == [
        ("syn-d5-0", "d5", 1), ("syn-d5-1", "d5", 1), ("syn-d6-0", "d6", 1), ("syn-d6-1", "d6", 1)]
    assert kept[0]["text"] == "the soloist played a is true."
    dropped = [json.loads(line) for line in (tmp_path / "gen" / "filtered.jsonl").read_text().splitlines()]
    assert [d["_id"] for d in dropped] == ["syn-d5-2", "syn-d6-2"] and all(d["rank"] > 1 for d in dropped)
    counts = manifest["counts"]
    assert (counts["documents"], counts["generated"], counts["kept"], counts["dropped"]) == (2, 6, 4, 2)
    assert counts["test_positives_excluded"] == 8 and manifest["complete"] is True
    assert manifest["filter"] == {"enabled": True, "top_k": 1, "teacher": "bm25 bm25"}
    assert "Write 3 different short scientific claims" in manifest["prompt"]["user"]
    assert manifest["timing"]["seconds_per_query"] >= 0 and manifest["timing"]["shards"] == 2
    assert json.loads((tmp_path / "gen" / MANIFEST_FILE).read_text()) == manifest


def test_killed_run_resumes_without_regenerating_finished_shards(tiny_beir_dir, tmp_path):
    cfg = compose_cfg(tiny_beir_dir, tmp_path / "gen", tmp_path / "cache", "sample=6", "shard_size=2",
                      "batch_size=2")
    with pytest.raises(KeyboardInterrupt):
        run_generation(cfg, llm=FakeLLM(fail_after_calls=2))  # killed while generating the third shard
    shards = sorted(p.name for p in (tmp_path / "gen" / SHARD_DIR).iterdir())
    assert shards == ["shard-00000.json", "shard-00001.json"]  # no temp file, no half shard
    assert not (tmp_path / "gen" / QUERIES_FILE).exists() and not (tmp_path / "gen" / MANIFEST_FILE).exists()
    llm = FakeLLM(batched=False)  # the chat() fallback finishes the run
    manifest = run_generation(cfg, llm=llm)
    assert len(llm.documents) == 2  # only the last shard's two documents
    assert manifest["timing"]["shards_loaded"] == 2 and manifest["counts"]["documents"] == 6
    # every shard done: a re-run (e.g. another filter.top_k) only filters again and never calls the teacher
    again = run_generation(compose_cfg(tiny_beir_dir, tmp_path / "gen", tmp_path / "cache", "sample=6",
                                       "shard_size=2", "batch_size=2", "filter.top_k=1000"), llm=NeverCalled())
    assert again["counts"]["kept"] == again["counts"]["generated"] == manifest["counts"]["generated"]
    plan = json.loads((tmp_path / "gen" / "plan.json").read_text())
    assert len(plan["doc_ids"]) == 6 and not set(plan["doc_ids"]) & TEST_POSITIVES
    with pytest.raises(ConfigError, match="belongs to a run with a different configuration \\(k differ"):
        run_generation(compose_cfg(tiny_beir_dir, tmp_path / "gen", tmp_path / "cache", "sample=6",
                                   "shard_size=2", "batch_size=2", "k=2"), llm=FakeLLM())


class NeverCalled:
    def chat(self, messages, max_new_tokens=128):
        raise AssertionError("the teacher was called")


class Refuses:
    def chat(self, messages, max_new_tokens=128):
        return "I don't know."


def test_teacher_reply_without_a_query_is_one_line_and_nothing_is_written(tiny_beir_dir, tmp_path):
    cfg = compose_cfg(tiny_beir_dir, tmp_path / "gen", tmp_path / "cache", "doc_ids=[d5,d6]")
    with pytest.raises(DataFormatError, match="the teacher's reply holds no query for any of the 2 documents"):
        run_generation(cfg, llm=Refuses())
    assert not (tmp_path / "gen" / QUERIES_FILE).exists() and not (tmp_path / "gen" / MANIFEST_FILE).exists()
    stop = compose_cfg(tiny_beir_dir, tmp_path / "gen2", tmp_path / "cache", "doc_ids=[d5,d6]", "on_bad_reply=stop")
    with pytest.raises(DataFormatError, match=r"shard-00000.json \(document 1 of the shard, id 'd5'\): the "
                                              r"teacher's reply holds no query: \"I don't know.\""):
        run_generation(stop, llm=Refuses())
    assert not list((tmp_path / "gen2" / SHARD_DIR).glob("*")) if (tmp_path / "gen2" / SHARD_DIR).exists() else True


def test_filter_drops_a_query_repeating_a_test_query_and_ranks_beyond_top_k():
    from kd.retrieval.synthetic.generate import Generated, filter_queries

    generated = [Generated("d5", "", ["Tennis serve racket?", "violin concerto soloist", "a far away query"])]
    kept, dropped = filter_queries(generated, lambda qs, ds: [1, 2, 7], 3, {"q10": "tennis serve racket"})
    assert [(q["_id"], q["rank"]) for q in kept] == [("syn-d5-1", 2)]
    assert [(d["_id"], d["reason"]) for d in dropped] == [
        ("syn-d5-0", "same text as a test query"), ("syn-d5-2", "source document ranked 7 > filter.top_k=3")]
