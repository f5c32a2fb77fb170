"""Read and write retrieval data in the BEIR folder format.

A BEIR folder holds::

    corpus.jsonl        one JSON object a line: {"_id": str, "title": str (optional), "text": str}
    queries.jsonl       one JSON object a line: {"_id": str, "text": str}
    qrels/<split>.tsv   header "query-id<TAB>corpus-id<TAB>score", then one judgement a line

Every reader is strict: the first problem found raises one :class:`~kd.errors.DataFormatError`
naming the file, the 1-based line and what is wrong. Blank lines are skipped (they still count for
line numbers). Ids must be JSON strings, as in BEIR's official files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping

from kd.errors import DataFormatError
from kd.io import atomic_open

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")

_INT_RE = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class RetrievalDataset:
    """One split of a retrieval benchmark.

    corpus:  doc_id -> text to encode (``f"{title} {text}"`` when the doc has a title, else ``text``).
    queries: query_id -> text, only the queries that have relevance judgements in this split.
    qrels:   query_id -> {doc_id: relevance}, relevance an int > 0 (rows <= 0 are dropped).
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


# --------------------------------------------------------------------------------------------- lines


def iter_lines(path: str | os.PathLike, what: str = "file") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line of a UTF-8 file (line numbers 1-based).

    The line terminator (``\\n`` or ``\\r\\n``) is removed; a UTF-8 byte-order mark on line 1 is
    dropped. Only ``\\n`` splits lines (unlike ``str.splitlines``, which also splits on U+2028 and
    friends that JSON strings may hold). ``what`` names the expected file in the "not found" message.

    Raises DataFormatError when the file is missing, is not valid UTF-8 (naming the line) or holds
    no non-blank line.
    """
    p = Path(path)
    if not p.exists():
        raise DataFormatError(p, None, f"file not found (expected {what})")
    if not p.is_file():
        raise DataFormatError(p, None, f"not a regular file (expected {what})")
    seen_content = False
    with open(p, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(
                    p, number, f"not valid UTF-8 (byte {exc.start + 1} of the line: {exc.reason})"
                ) from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            text = text.rstrip("\n").rstrip("\r")
            if not text.strip():
                continue
            seen_content = True
            yield number, text
    if not seen_content:
        raise DataFormatError(p, None, f"file is empty (expected {what})")


def parse_json_object(path: str | os.PathLike, line: int, text: str) -> dict[str, Any]:
    """Parse one JSON Lines line that must hold a JSON object; DataFormatError otherwise."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DataFormatError(path, line, f"malformed JSON: {_short(exc)}") from None
    if not isinstance(obj, dict):
        raise DataFormatError(path, line, f"expected a JSON object, got {_json_type(obj)}")
    return obj


def check_string(path: str | os.PathLike, line: int, obj: Mapping[str, Any], key: str,
                 *, allow_empty: bool = False) -> str:
    """Return ``obj[key]``, which must be present, a string, valid Unicode and (by default) not blank."""
    if key not in obj:
        raise DataFormatError(path, line, f"missing field {key!r}")
    return check_string_value(path, line, obj[key], f"field {key!r}", allow_empty=allow_empty)


def check_string_value(path: str | os.PathLike, line: int, value: Any, name: str,
                       *, allow_empty: bool = False) -> str:
    """``value`` must be a string (named ``name`` in messages) that encodes to UTF-8 and is not blank."""
    if not isinstance(value, str):
        hint = " (ids must be JSON strings, e.g. \"123\" not 123)" if "id" in name else ""
        raise DataFormatError(path, line, f"{name} must be a string, got {_json_type(value)}{hint}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        problem = f"{name} holds an unpaired surrogate escape (\\ud800-\\udfff)"
        raise DataFormatError(path, line, problem) from None
    if not allow_empty and not value.strip():
        raise DataFormatError(path, line, f"{name} is empty")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(exc: BaseException, limit: int = 120) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -------------------------------------------------------------------------------------------- readers


def load_corpus(path: str | os.PathLike) -> dict[str, str]:
    """Read a BEIR ``corpus.jsonl``: doc_id -> text to encode.

    The text is ``f"{title} {text}"`` when the record has a non-blank ``title`` (the BEIR /
    sentence-transformers convention), else ``text``. A record may have an empty ``text`` when its
    title is non-blank; ``title`` may be absent or null.
    """
    corpus: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, text in iter_lines(path, "a BEIR corpus.jsonl"):
        obj = parse_json_object(path, line, text)
        doc_id = check_string(path, line, obj, "_id")
        if doc_id in first_line:
            raise DataFormatError(
                path, line, f"duplicate _id {doc_id!r} (first on line {first_line[doc_id]})"
            )
        title = obj.get("title")
        if title is not None:
            title = check_string_value(path, line, title, "field 'title'", allow_empty=True)
        body = check_string(path, line, obj, "text", allow_empty=True)
        has_title = bool(title and title.strip())
        if not body.strip():
            if not has_title:
                raise DataFormatError(path, line, f"document {doc_id!r} has empty text and no title")
            corpus[doc_id] = title  # type: ignore[assignment]
        else:
            corpus[doc_id] = f"{title} {body}" if has_title else body
        first_line[doc_id] = line
    return corpus


def load_queries(path: str | os.PathLike) -> dict[str, str]:
    """Read a BEIR ``queries.jsonl``: query_id -> query text (other fields, e.g. metadata, are ignored)."""
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, text in iter_lines(path, "a BEIR queries.jsonl"):
        obj = parse_json_object(path, line, text)
        query_id = check_string(path, line, obj, "_id")
        if query_id in first_line:
            raise DataFormatError(
                path, line, f"duplicate _id {query_id!r} (first on line {first_line[query_id]})"
            )
        queries[query_id] = check_string(path, line, obj, "text")
        first_line[query_id] = line
    return queries


def load_qrels(
    path: str | os.PathLike,
    corpus_ids: Collection[str] | None = None,
    query_ids: Collection[str] | None = None,
) -> dict[str, dict[str, int]]:
    """Read a BEIR ``qrels/<split>.tsv``: query_id -> {doc_id: relevance}.

    The first non-blank line must be the header ``query-id<TAB>corpus-id<TAB>score``. Scores are
    integers; rows scoring <= 0 are dropped (queries left without a relevant doc are absent). When
    ``corpus_ids`` / ``query_ids`` are given, every row (dropped or not) must name known ids. The same
    (query, doc) pair twice with the same score is accepted; with different scores it is an error.
    """
    corpus_set = None if corpus_ids is None else (corpus_ids if isinstance(corpus_ids, (set, frozenset, dict))
                                                   else set(corpus_ids))
    query_set = None if query_ids is None else (query_ids if isinstance(query_ids, (set, frozenset, dict))
                                                 else set(query_ids))
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[tuple[str, str], tuple[int, int]] = {}  # (query, doc) -> (score, line)
    header_done = False
    for line, text in iter_lines(path, "a BEIR qrels TSV with header 'query-id\\tcorpus-id\\tscore'"):
        fields = text.split("\t")
        if not header_done:
            header_done = True
            if tuple(f.strip() for f in fields) != QRELS_HEADER:
                raise DataFormatError(
                    path, line, f"expected the header 'query-id\\tcorpus-id\\tscore', got {text[:80]!r}"
                )
            continue
        if len(fields) != 3:
            raise DataFormatError(path, line, f"expected 3 tab-separated columns, got {len(fields)}")
        query_id, doc_id, score_text = (f.strip() for f in fields)
        if not query_id:
            raise DataFormatError(path, line, "empty query-id")
        if not doc_id:
            raise DataFormatError(path, line, "empty corpus-id")
        if not _INT_RE.fullmatch(score_text):
            raise DataFormatError(path, line, f"score must be an integer, got {score_text[:40]!r}")
        score = int(score_text)
        if query_set is not None and query_id not in query_set:
            raise DataFormatError(path, line, f"unknown query-id {query_id!r} (not in the queries)")
        if corpus_set is not None and doc_id not in corpus_set:
            raise DataFormatError(path, line, f"unknown corpus-id {doc_id!r} (not in the corpus)")
        key = (query_id, doc_id)
        if key in seen:
            old_score, old_line = seen[key]
            if old_score != score:
                raise DataFormatError(
                    path, line,
                    f"pair ({query_id!r}, {doc_id!r}) scored {score} here but {old_score} on line {old_line}",
                )
            continue
        seen[key] = (score, line)
        if score > 0:
            qrels.setdefault(query_id, {})[doc_id] = score
    if not seen:
        raise DataFormatError(path, None, "no judgements after the header (file is empty)")
    return qrels


def load_beir(folder: str | os.PathLike, split: str = "test") -> RetrievalDataset:
    """Load one split of a BEIR folder; qrels are checked against the corpus and queries.

    ``queries`` of the result holds only the queries with at least one relevant doc in ``split``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataFormatError(
            root, None,
            f"BEIR folder not found (expected a folder holding {CORPUS_FILE}, {QUERIES_FILE} and "
            f"{QRELS_DIR}/{split}.tsv)",
        )
    qrels_path = root / QRELS_DIR / f"{split}.tsv"
    if not qrels_path.is_file():
        qrels_dir = root / QRELS_DIR
        available = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        raise DataFormatError(
            qrels_path, None,
            f"file not found (expected the qrels of split {split!r}; splits present: {available or 'none'})",
        )
    corpus = load_corpus(root / CORPUS_FILE)
    all_queries = load_queries(root / QUERIES_FILE)
    qrels = load_qrels(qrels_path, corpus_ids=corpus, query_ids=all_queries)
    queries = {qid: all_queries[qid] for qid in all_queries if qid in qrels}
    return RetrievalDataset(corpus=corpus, queries=queries, qrels=qrels)


# -------------------------------------------------------------------------------------------- writer


def write_beir(
    folder: str | os.PathLike,
    corpus: Mapping[str, tuple[str, str]],
    queries: Mapping[str, str],
    qrels_by_split: Mapping[str, Mapping[str, Mapping[str, int]]],
) -> Path:
    """Write a BEIR folder (each file atomically) and return its path.

    corpus: doc_id -> (title, text), title "" for none; queries: query_id -> text;
    qrels_by_split: split name -> query_id -> {doc_id: int relevance}.
    Raises ValueError on input that :func:`load_beir` would reject (empty ids or texts, unknown ids in
    qrels, non-int relevance, split names that are not plain file names).
    """
    root = Path(folder)
    for doc_id, (title, text) in corpus.items():
        if not isinstance(doc_id, str) or not doc_id.strip():
            raise ValueError(f"corpus: doc id must be a non-empty string, got {doc_id!r}")
        if not text.strip() and not title.strip():
            raise ValueError(f"corpus: document {doc_id!r} has empty title and text")
    for query_id, text in queries.items():
        if not isinstance(query_id, str) or not query_id.strip():
            raise ValueError(f"queries: query id must be a non-empty string, got {query_id!r}")
        if not text.strip():
            raise ValueError(f"queries: query {query_id!r} has empty text")
    for split, qrels in qrels_by_split.items():
        if not split or Path(split).name != split or split.startswith("."):
            raise ValueError(f"split name {split!r} must be a plain file name")
        for query_id, docs in qrels.items():
            if query_id not in queries:
                raise ValueError(f"qrels[{split!r}]: unknown query id {query_id!r}")
            for doc_id, score in docs.items():
                if doc_id not in corpus:
                    raise ValueError(f"qrels[{split!r}][{query_id!r}]: unknown doc id {doc_id!r}")
                if isinstance(score, bool) or not isinstance(score, int):
                    raise ValueError(f"qrels[{split!r}][{query_id!r}][{doc_id!r}]: relevance must be an int")
                if any(c in s for s in (query_id, doc_id) for c in "\t\r\n"):
                    raise ValueError(
                        f"qrels[{split!r}]: ids may not hold tabs or newlines: {query_id!r}, {doc_id!r}"
                    )

    root.mkdir(parents=True, exist_ok=True)
    with atomic_open(root / CORPUS_FILE, "w") as handle:
        for doc_id, (title, text) in corpus.items():
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with atomic_open(root / QUERIES_FILE, "w") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
    for split, qrels in qrels_by_split.items():
        with atomic_open(root / QRELS_DIR / f"{split}.tsv", "w") as handle:
            handle.write("\t".join(QRELS_HEADER) + "\n")
            for query_id, docs in qrels.items():
                for doc_id, score in docs.items():
                    handle.write(f"{query_id}\t{doc_id}\t{score}\n")
    return root
