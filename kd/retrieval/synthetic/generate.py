"""``kd-generate-queries``: the LLM teacher writes queries for unlabelled corpus documents; a corpus teacher keeps
the consistent ones.

Steps (every file written atomically, so a kill at any moment leaves each file old or new, never torn):

1. **Sample** ``sample`` documents (seeded) from the corpus minus every document that is a positive of an
   evaluation (test) query, or take ``doc_ids``; the list is written to ``<out_dir>/plan.json`` with everything
   that shapes the teacher's replies (model, prompt, ``k``, token limit, shard size).
2. **Generate** in shards of ``shard_size`` documents: the teacher (``kd.pipeline.teacher.make_teacher``, the same
   ``pipeline/teacher`` group as kd-pipeline) is asked for ``k`` queries per document, through ``chat_batch`` when
   it has one (batched generation), else ``chat`` one document at a time. Each finished shard is
   ``shards/shard-NNNNN.json`` (documents, raw replies, parsed queries, seconds); a re-run into the same
   ``out_dir`` loads finished shards and generates only the rest. A reply with no query is reported on one line
   (shard, document, reply) and the document gets none (``on_bad_reply=stop`` stops there instead).
3. **Filter** (round-trip consistency, InPars / Promptagator / GPL): a query is kept only when the configured
   corpus teacher (``filter.teacher``: BM25, the fusion, a bi-encoder) ranks its source document within its top
   ``filter.top_k`` over the whole corpus; a query that repeats a test query's text is dropped as well.
4. **Write** ``queries.jsonl`` (kept: ``{"_id", "text", "doc_id", "rank"}``, what ``kd-train data.synthetic=``
   reads), ``filtered.jsonl`` (dropped, with the reason) and, last, ``manifest.json`` (prompt, model, counts,
   seconds per query). Filtering is cheap and re-done on every run, so ``filter.top_k`` can change without
   regenerating anything.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from kd.errors import ConfigError, DataFormatError
from kd.io import atomic_open, atomic_write_json
from kd.retrieval.synthetic.prompts import STYLES, normalise, parse_queries, query_messages, verbatim_share

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
SHARD_DIR = "shards"
QUERIES_FILE = "queries.jsonl"
FILTERED_FILE = "filtered.jsonl"
MANIFEST_FILE = "manifest.json"
COPIED_SHARE = 0.8  # verbatim share from which a query counts as copied from its document
NO_QUERY = "the teacher's reply holds no query"


# ---------------------------------------------------------------------------------------------- sampling


def eval_positive_documents(qrels: Mapping[str, Mapping[str, int]]) -> set[str]:
    """Every document that is a positive (relevance > 0) of some query of ``qrels``."""
    return {d for docs in qrels.values() for d, r in docs.items() if r > 0}


def choose_documents(corpus: Mapping[str, str], excluded: set[str], sample: int | None, seed: int,
                     doc_ids: Sequence[str] | None = None, corpus_name: str = "the corpus") -> list[str]:
    """The documents to write queries for, in generation order.

    ``doc_ids`` (explicit) must all be in ``corpus`` and none may be excluded (a test positive); otherwise
    ``sample`` documents are drawn with ``random.Random(seed)`` from the corpus minus ``excluded`` (all of them
    when fewer are left). An empty result is refused with one line saying why.
    """
    if doc_ids is not None:
        chosen = list(dict.fromkeys(str(d) for d in doc_ids))
        for doc_id in chosen:
            if doc_id not in corpus:
                raise ConfigError(f"doc_ids: document id {doc_id!r} is not in {corpus_name}")
            if doc_id in excluded:
                raise ConfigError(f"doc_ids: document {doc_id!r} is a positive of a test query; synthetic queries "
                                  "are never written for test documents")
        if not chosen:
            raise ConfigError("doc_ids is empty: no document to write queries for")
        return chosen
    if sample is None or int(sample) < 1:
        raise ConfigError(f"sample must be a number of documents >= 1, got {sample!r}: an empty corpus sample")
    candidates = sorted(d for d in corpus if d not in excluded)
    if not candidates:
        raise ConfigError(f"no document of {corpus_name} is left to sample after excluding the {len(excluded)} "
                          "positives of test queries: an empty corpus sample")
    if int(sample) >= len(candidates):
        chosen = candidates
    else:
        chosen = random.Random(seed).sample(candidates, int(sample))
    return chosen


# ------------------------------------------------------------------------------------------ generation


def ask_teacher(llm, conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
    """The teacher's replies in input order, batched through ``chat_batch`` when the object has it, else one
    ``chat`` each (``kd.pipeline.chat.chat_many``)."""
    from kd.pipeline.chat import chat_many

    return chat_many(llm, conversations, max_new_tokens)


def llm_identity(tcfg: Mapping[str, Any]) -> dict:
    """What names the LLM teacher in the plan and manifest (never an API key: only the variable's name)."""
    keys = ("backend", "model", "base_url", "dtype", "temperature")
    return {k: tcfg[k] for k in keys if k in tcfg and tcfg[k] is not None}


def shard_path(out_dir: Path, index: int) -> Path:
    return out_dir / SHARD_DIR / f"shard-{index:05d}.json"


def read_shard(path: Path, expected_docs: list[str]) -> dict | None:
    """A finished shard, or None when it is unreadable or holds other documents (then it is generated again)."""
    try:
        shard = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("%s is unreadable: generating that shard again", path)
        return None
    if not isinstance(shard, dict) or shard.get("doc_ids") != expected_docs:
        log.warning("%s holds other documents than the plan: generating that shard again", path)
        return None
    return shard


def write_plan(out_dir: Path, identity: dict, doc_ids: list[str], overwrite: bool) -> None:
    """Write ``plan.json``, or check that the one there is this run's (a resumed run must be the same run)."""
    path = out_dir / PLAN_FILE
    plan = {"identity": identity, "doc_ids": doc_ids}
    if path.is_file() and not overwrite:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            saved = None
        if saved != json.loads(json.dumps(plan)):
            old = (saved or {}).get("identity", {})
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != json.loads(json.dumps(identity)).get(k))
            raise ConfigError(f"{path} belongs to a run with a different configuration ({', '.join(diff) or 'documents'}"
                              " differ): use another out_dir, or overwrite=true to start again")
        return
    if overwrite and (out_dir / SHARD_DIR).is_dir():
        for old in (out_dir / SHARD_DIR).glob("shard-*.json"):
            old.unlink()
    atomic_write_json(path, plan)


@dataclass
class Generated:
    """One document's reply and the queries parsed from it."""

    doc_id: str
    reply: str
    queries: list[str]


def generate_shards(get_llm: Callable[[], Any], corpus: Mapping[str, str], doc_ids: list[str], out_dir: Path, *, k: int, style: str,
                    max_chars: int, max_new_tokens: int, shard_size: int, batch_size: int,
                    on_bad_reply: str = "skip", progress: bool = True, stop_after_s: float | None = None
                    ) -> tuple[list[Generated], dict]:
    """Generate (or load) every shard; returns the finished shards' replies in plan order and timing figures.

    ``get_llm()`` makes the teacher; it is called only when a shard is left to generate.

    ``stop_after_s``: start no new shard after this many seconds of this run (the rest is generated by a later
    run into the same folder)."""
    shards = [doc_ids[i:i + shard_size] for i in range(0, len(doc_ids), shard_size)]
    results: dict[int, list[Generated]] = {}
    seconds: dict[int, float] = {}
    for index, docs in enumerate(shards):
        path = shard_path(out_dir, index)
        if path.is_file() and (shard := read_shard(path, docs)) is not None:
            # parsed again from the raw reply: a parser fix applies to shards generated before it
            results[index] = [Generated(r["doc_id"], r["reply"], parse_queries(r["reply"], k)) for r in shard["records"]]
            seconds[index] = float(shard.get("seconds", 0.0))
    done_docs = sum(len(shards[i]) for i in results)
    resumed = len(results)
    if resumed:
        log.info("resuming: %d of %d shards already generated (%d documents)", resumed, len(shards), done_docs)
    bar = _progress_bar(len(doc_ids), done_docs, progress)
    new_queries = 0
    new_seconds = 0.0
    run_start = time.perf_counter()
    try:
        for index, docs in enumerate(shards):
            if index in results:
                continue
            if stop_after_s is not None and time.perf_counter() - run_start > stop_after_s:
                log.info("stop_after_s=%g reached: %d of %d shards done; re-run to generate the rest",
                         stop_after_s, len(results), len(shards))
                break
            path = shard_path(out_dir, index)
            records: list[Generated] = []
            start = time.perf_counter()
            for b in range(0, len(docs), batch_size):
                batch = docs[b:b + batch_size]
                conversations = [query_messages(corpus[d], k, style, max_chars) for d in batch]
                replies = ask_teacher(get_llm(), conversations, max_new_tokens)
                for position, (doc_id, reply) in enumerate(zip(batch, replies), start=b + 1):
                    queries = parse_queries(reply, k)
                    if not queries:
                        where = f"{path} (document {position} of the shard, id {doc_id!r})"
                        if on_bad_reply == "stop":
                            raise DataFormatError(where, None, f"{NO_QUERY}: {reply[:200]!r}")
                        log.warning("%s: %s: %r; the document gets no query", where, NO_QUERY, reply[:200])
                    records.append(Generated(doc_id, reply, queries))
                    new_queries += len(queries)
                bar.update(len(batch))
                elapsed = new_seconds + time.perf_counter() - start
                if new_queries:
                    bar.set_postfix_str(f"{elapsed / new_queries:.1f} s/query")
            seconds[index] = time.perf_counter() - start
            new_seconds += seconds[index]
            atomic_write_json(path, {"shard": index, "doc_ids": docs, "seconds": round(seconds[index], 3),
                                     "records": [{"doc_id": r.doc_id, "reply": r.reply, "queries": r.queries}
                                                 for r in records]})
            results[index] = records
    finally:
        bar.close()
    generated = [g for i in range(len(shards)) if i in results for g in results[i]]
    timing = {"shards": len(shards), "shards_done": len(results), "shards_loaded": resumed, "generation_seconds": round(sum(seconds.values()), 2),
              "generation_seconds_this_run": round(new_seconds, 2)}
    return generated, timing


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="doc", desc="generating queries", disable=not enabled,
                dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------- filter


def source_ranks(teacher, corpus_ids: list[str], queries: list[str], sources: list[str],
                 batch_size: int = 64) -> list[int]:
    """1-based rank of each query's source document in ``teacher``'s ranking of the indexed corpus (ties count in
    the document's favour: rank = 1 + the number of documents scored strictly higher)."""
    row_of = {d: i for i, d in enumerate(corpus_ids)}
    ranks: list[int] = []
    for start in range(0, len(queries), batch_size):
        scores = teacher.corpus_scores(queries[start:start + batch_size])
        for row, source in zip(scores, sources[start:start + batch_size]):
            ranks.append(1 + int((row > row[row_of[source]]).sum()))
    return ranks


def filter_queries(generated: list[Generated], rank_fn: Callable[[list[str], list[str]], list[int]] | None,
                   top_k: int, test_queries: Mapping[str, str],
                   corpus: Mapping[str, str] | None = None) -> tuple[list[dict], list[dict]]:
    """(kept, dropped) query records; ``rank_fn(queries, source_ids) -> ranks`` or None (no round-trip filter).

    With ``corpus`` each record carries ``verbatim``: the share of its words copied in one run from its document.
    """
    rows = [(g.doc_id, j, q) for g in generated for j, q in enumerate(g.queries)]
    ranks = rank_fn([q for _, _, q in rows], [d for d, _, _ in rows]) if (rank_fn and rows) else [None] * len(rows)
    test_texts = {normalise(t) for t in test_queries.values()}
    kept, dropped = [], []
    for (doc_id, j, text), rank in zip(rows, ranks):
        record = {"_id": f"syn-{doc_id}-{j}", "text": text, "doc_id": doc_id, "rank": rank}
        if corpus is not None:
            record["verbatim"] = round(verbatim_share(text, corpus[doc_id]), 3)
        if normalise(text) in test_texts:
            dropped.append({**record, "reason": "same text as a test query"})
        elif rank is not None and rank > top_k:
            dropped.append({**record, "reason": f"source document ranked {rank} > filter.top_k={top_k}"})
        else:
            kept.append(record)
    return kept, dropped


def write_jsonl(path: Path, records: list[dict]) -> None:
    with atomic_open(path, "w") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------- run


def run_generation(cfg, llm=None, filter_teacher=None) -> dict:
    """Run ``kd-generate-queries`` with config ``cfg`` (``conf/generate_queries.yaml``); returns the manifest.

    ``llm`` (anything with ``chat`` and optionally ``chat_batch``) and ``filter_teacher`` (a built
    ``BuiltTeacher``) replace the configured ones, for tests."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    k, top_k = int(cfg["k"]), int(cfg["filter"]["top_k"])
    style = cfg["prompt"]["style"]
    if k < 1:
        raise ConfigError(f"k must be >= 1 (queries per document), got {k}")
    if top_k < 1:
        raise ConfigError(f"filter.top_k must be >= 1, got {top_k}")
    if style not in STYLES:
        raise ConfigError(f"prompt.style must be one of {', '.join(STYLES)}, got {style!r}")
    if cfg.get("on_bad_reply", "skip") not in ("skip", "stop"):
        raise ConfigError(f"on_bad_reply must be skip or stop, got {cfg.get('on_bad_reply')!r}")
    shard_size, batch_size = int(cfg["shard_size"]), int(cfg["batch_size"])
    if shard_size < 1 or batch_size < 1:
        raise ConfigError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}")
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg["threads"]))
    out_dir = Path(cfg["out_dir"])
    started = time.perf_counter()

    splits, dev, corpus_name = _load_data(cfg)
    excluded = eval_positive_documents(splits.eval_qrels)
    doc_ids = choose_documents(splits.corpus, excluded, cfg.get("sample"), int(cfg["seed"]), cfg.get("doc_ids"),
                               corpus_name)
    max_new_tokens, max_chars = int(cfg["max_new_tokens"]), int(cfg["prompt"]["max_chars"])
    identity = {"data": {"format": cfg["data"]["format"], "path": str(cfg["data"]["path"]),
                         "eval_split": cfg["data"]["eval_split"]},
                "seed": int(cfg["seed"]), "sample": cfg.get("sample"), "k": k, "prompt": {"style": style,
                "max_chars": max_chars}, "max_new_tokens": max_new_tokens, "shard_size": shard_size,
                "teacher": llm_identity(cfg["teacher"]) if llm is None else {"object": getattr(llm, "name", "injected")}}
    write_plan(out_dir, identity, doc_ids, bool(cfg.get("overwrite", False)))
    log.info("%d documents to write %d queries each for (%d test positives excluded of %d documents)",
             len(doc_ids), k, len(excluded), len(splits.corpus))

    built = filter_teacher
    if built is None and cfg["filter"].get("enabled", True):  # before the long generation: fail early
        from kd.retrieval.teachers import build_teacher

        built = build_teacher(cfg["filter"]["teacher"], splits, dev, cfg["paths"]["cache_dir"], seed=int(cfg["seed"]))
        if not hasattr(built.teacher, "corpus_scores"):
            raise ConfigError("filter.teacher must rank the whole corpus (ensemble, bm25 or bi_encoder); a "
                              "cross-encoder only scores given pairs")
    made: list = []

    def get_llm():
        if llm is not None:
            return llm
        if not made:
            from kd.pipeline.teacher import make_teacher

            made.append(make_teacher(cfg["teacher"], seed=int(cfg["seed"])))
        return made[0]

    try:
        generated, timing = generate_shards(
            get_llm, splits.corpus, doc_ids, out_dir, k=k, style=style, max_chars=max_chars,
            max_new_tokens=max_new_tokens, shard_size=shard_size, batch_size=batch_size,
            on_bad_reply=cfg.get("on_bad_reply", "skip"), progress=bool(cfg.get("progress", True)),
            stop_after_s=None if cfg.get("stop_after_s") is None else float(cfg["stop_after_s"]))
    finally:
        for teacher in made:
            if hasattr(teacher, "close"):
                teacher.close()

    no_query = [g.doc_id for g in generated if not g.queries]
    total = sum(len(g.queries) for g in generated)
    if total == 0:
        raise DataFormatError(out_dir / SHARD_DIR, None, f"{NO_QUERY} for any of the {len(generated)} documents "
                              f"(first reply: {generated[0].reply[:200]!r}); nothing written")
    corpus_ids = list(splits.corpus)
    rank_fn = None
    if built is not None:
        def rank_fn(queries, sources):
            return source_ranks(built.teacher, corpus_ids, queries, sources)
    filter_start = time.perf_counter()
    kept, dropped = filter_queries(generated, rank_fn, top_k, splits.eval_queries, splits.corpus)
    filter_seconds = time.perf_counter() - filter_start
    if not kept:
        raise DataFormatError(out_dir / QUERIES_FILE, None, f"the filter kept none of the {total} generated queries "
                              f"(filter.top_k={top_k}); nothing written")
    write_jsonl(out_dir / QUERIES_FILE, kept)
    write_jsonl(out_dir / FILTERED_FILE, dropped)
    example = query_messages("<document text>", k, style, max_chars)
    manifest = {
        "queries_file": QUERIES_FILE,
        "teacher": identity["teacher"],
        "prompt": {"style": style, "max_chars": max_chars, "system": example[0]["content"],
                   "user": example[1]["content"], "k": k, "max_new_tokens": max_new_tokens},
        "filter": {"enabled": built is not None, "top_k": top_k,
                   "teacher": None if built is None else built.description},
        "data": identity["data"], "seed": int(cfg["seed"]), "sample": cfg.get("sample"),
        "complete": len(generated) == len(doc_ids),
        "counts": {"corpus": len(splits.corpus), "test_positives_excluded": len(excluded), "planned": len(doc_ids),
                   "documents": len(generated),
                   "documents_without_query": len(no_query), "generated": total, "kept": len(kept),
                   "dropped": len(dropped),
                   "dropped_same_as_test_query": sum(d["reason"].startswith("same text") for d in dropped),
                   # a kept query whose longest run of words copied from its document is >= 80 % of its words
                   "kept_copied_from_document": sum(r["verbatim"] >= COPIED_SHARE for r in kept)},
        "kept_verbatim_share_mean": round(sum(r["verbatim"] for r in kept) / len(kept), 3),
        "timing": {**timing, "seconds_per_query": round(timing["generation_seconds"] / total, 3),
                   "seconds_per_document": round(timing["generation_seconds"] / max(1, len(generated)), 3),
                   "filter_seconds": round(filter_seconds, 2),
                   "wall_seconds_this_run": round(time.perf_counter() - started, 2)},
        "documents_without_query": no_query,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out_dir / MANIFEST_FILE, manifest)
    return manifest


def _load_data(cfg: Mapping[str, Any]):
    """The whole corpus, every test qrel (never a subset: all test positives are excluded) and the dev split
    (an ensemble filter teacher chooses its fusion on it, as kd-train does)."""
    from kd.retrieval.data.sources import load_retrieval_data
    from kd.retrieval.dev_split import carve_dev_split

    data = cfg["data"]
    splits = load_retrieval_data(format=data["format"], path=data["path"], train_split=data["train_split"],
                                 eval_split=data["eval_split"], seed=int(cfg["seed"]),
                                 cache_dir=cfg["paths"]["cache_dir"])
    if not splits.corpus:
        raise DataFormatError(data["path"], None, "the corpus is empty: an empty corpus sample")
    splits, dev = carve_dev_split(splits, float(data.get("dev_fraction", 0.0)), seed=int(cfg["seed"]))
    return splits, dev, f"the corpus of {data['path']}"
