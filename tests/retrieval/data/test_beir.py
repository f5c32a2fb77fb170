"""Tests of kd.retrieval.data.beir: exact loads of good files, one DataFormatError (file + line) per bad input."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kd.retrieval.data.beir import (
    RetrievalDataset,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
    write_beir,
)
from kd.errors import DataFormatError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def assert_error(exc_info: pytest.ExceptionInfo, path: Path, line: int | None, *words: str) -> None:
    """The error names ``path`` and ``line`` (message starts ``path:line: ``) and contains ``words``."""
    err = exc_info.value
    assert isinstance(err, DataFormatError)
    assert err.line == line
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(err).startswith(prefix), str(err)
    for word in words:
        assert word in str(err), (word, str(err))


# ---------------------------------------------------------------------------------------------- corpus


def test_load_corpus_exact(tmp_path: Path) -> None:
    path = write(
        tmp_path / "corpus.jsonl",
        '{"_id": "d1", "title": "Title One", "text": "Body one."}\n'
        "\n"
        '{"_id": "d2", "text": "No title."}\r\n'
        '{"_id": "d3", "title": "", "text": "Empty title."}\n'
        '{"_id": "d4", "title": "Only a title", "text": ""}\n'
        '{"_id": "d5", "title": null, "text": "Null title \\u00e9\\u2028x", "metadata": {"a": 1}}\n'
        "   \n",
    )
    assert load_corpus(path) == {
        "d1": "Title One Body one.",
        "d2": "No title.",
        "d3": "Empty title.",
        "d4": "Only a title",
        "d5": "Null title \u00e9\u2028x",
    }


def test_load_corpus_bom_first_line(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.jsonl", b'\xef\xbb\xbf{"_id": "a", "text": "x"}\n')
    assert load_corpus(path) == {"a": "x"}


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', 2, ["malformed JSON"]),
        ('{"_id": "a", "text": "x"}\n\n["a", "x"]\n', 3, ["JSON object", "array"]),
        ('{"_id": "a", "text": "x"}\n"just a string"\n', 2, ["JSON object"]),
        ('{"text": "x"}\n', 1, ["missing field '_id'"]),
        ('{"_id": "a", "text": "x"}\n{"_id": 7, "text": "y"}\n', 2, ["'_id' must be a string", "number"]),
        ('{"_id": "", "text": "y"}\n', 1, ["'_id' is empty"]),
        ('{"_id": "a"}\n', 1, ["missing field 'text'"]),
        ('{"_id": "a", "text": ["x"]}\n', 1, ["'text' must be a string"]),
        ('{"_id": "a", "text": null}\n', 1, ["'text' must be a string", "null"]),
        ('{"_id": "a", "title": 3, "text": "x"}\n', 1, ["'title' must be a string"]),
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": "  "}\n', 2, ["empty text and no title"]),
        ('{"_id": "a", "title": " ", "text": ""}\n', 1, ["empty text and no title"]),
        ('{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": "y"}\n{"_id": "a", "text": "z"}\n', 4,
         ["duplicate _id 'a'", "first on line 1"]),
        ('{"_id": "a", "text": "\\ud800"}\n', 1, ["surrogate"]),
    ],
)
def test_load_corpus_errors(tmp_path: Path, content: str, line: int, words: list[str]) -> None:
    path = write(tmp_path / "corpus.jsonl", content)
    with pytest.raises(DataFormatError) as exc_info:
        load_corpus(path)
    assert_error(exc_info, path, line, *words)


def test_load_corpus_invalid_utf8_names_line(tmp_path: Path) -> None:
    content = b'{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": "\xff\xfe"}\n'
    path = write(tmp_path / "corpus.jsonl", content)
    with pytest.raises(DataFormatError) as exc_info:
        load_corpus(path)
    assert_error(exc_info, path, 3, "not valid UTF-8")


@pytest.mark.parametrize("content", ["", "\n  \n\r\n"])
def test_load_corpus_empty_file(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "corpus.jsonl", content)
    with pytest.raises(DataFormatError) as exc_info:
        load_corpus(path)
    assert_error(exc_info, path, None, "empty", "corpus.jsonl")


def test_load_corpus_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "corpus.jsonl"
    with pytest.raises(DataFormatError) as exc_info:
        load_corpus(path)
    assert_error(exc_info, path, None, "not found", "corpus.jsonl")


def test_load_corpus_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as exc_info:
        load_corpus(tmp_path)
    assert_error(exc_info, tmp_path, None, "not a regular file")


# --------------------------------------------------------------------------------------------- queries


def test_load_queries_exact(tmp_path: Path) -> None:
    path = write(
        tmp_path / "queries.jsonl",
        '{"_id": "q1", "text": "what is x?"}\n\n{"_id": "q2", "text": "why y", "metadata": {}}\n',
    )
    assert load_queries(path) == {"q1": "what is x?", "q2": "why y"}


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "b"\n', 2, ["malformed JSON"]),
        ("42\n", 1, ["JSON object", "number"]),
        ('{"_id": 1, "text": "a"}\n', 1, ["'_id' must be a string", "ids must be JSON strings"]),
        ('{"text": "a"}\n', 1, ["missing field '_id'"]),
        ('{"_id": "q1"}\n', 1, ["missing field 'text'"]),
        ('{"_id": "q1", "text": 5}\n', 1, ["'text' must be a string"]),
        ('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": ""}\n', 2, ["'text' is empty"]),
        ('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "b"}\n\n{"_id": "q2", "text": "c"}\n', 4,
         ["duplicate _id 'q2'", "first on line 2"]),
    ],
)
def test_load_queries_errors(tmp_path: Path, content: str, line: int, words: list[str]) -> None:
    path = write(tmp_path / "queries.jsonl", content)
    with pytest.raises(DataFormatError) as exc_info:
        load_queries(path)
    assert_error(exc_info, path, line, *words)


def test_load_queries_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as exc_info:
        load_queries(tmp_path / "queries.jsonl")
    assert_error(exc_info, tmp_path / "queries.jsonl", None, "not found", "queries.jsonl")
    path = write(tmp_path / "queries.jsonl", "")
    with pytest.raises(DataFormatError) as exc_info:
        load_queries(path)
    assert_error(exc_info, path, None, "empty")


# ----------------------------------------------------------------------------------------------- qrels

QRELS_GOOD = (
    "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\n\nq2\td1\t0\nq3\td3\t-1\nq1\td2\t2\r\nq4\td3\t+1\n"
)


def test_load_qrels_exact(tmp_path: Path) -> None:
    path = write(tmp_path / "qrels" / "test.tsv", QRELS_GOOD)
    assert load_qrels(path) == {"q1": {"d1": 1, "d2": 2}, "q4": {"d3": 1}}
    ids = load_qrels(path, corpus_ids=["d1", "d2", "d3"], query_ids={"q1", "q2", "q3", "q4"})
    assert ids == {"q1": {"d1": 1, "d2": 2}, "q4": {"d3": 1}}


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("q1\td1\t1\n", 1, ["expected the header"]),
        ("\nquery-id\tcorpus-id\n", 2, ["expected the header"]),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", 3, ["3 tab-separated columns, got 2"]),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\t9\n", 2, ["3 tab-separated columns, got 4"]),
        ("query-id\tcorpus-id\tscore\nq1 d1 1\n", 2, ["got 1"]),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1.0\n", 2, ["integer", "'1.0'"]),
        ("query-id\tcorpus-id\tscore\nq1\td1\t\n", 2, ["integer"]),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1_0\n", 2, ["integer"]),
        ("query-id\tcorpus-id\tscore\n\td1\t1\n", 2, ["empty query-id"]),
        ("query-id\tcorpus-id\tscore\nq1\t \t1\n", 2, ["empty corpus-id"]),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\n\nq1\td1\t2\n", 4, ["scored 2 here but 1 on line 2"]),
    ],
)
def test_load_qrels_errors(tmp_path: Path, content: str, line: int, words: list[str]) -> None:
    path = write(tmp_path / "test.tsv", content)
    with pytest.raises(DataFormatError) as exc_info:
        load_qrels(path)
    assert_error(exc_info, path, line, *words)


def test_load_qrels_unknown_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "test.tsv", QRELS_GOOD)
    with pytest.raises(DataFormatError) as exc_info:
        load_qrels(path, corpus_ids={"d1", "d3"})
    assert_error(exc_info, path, 3, "unknown corpus-id 'd2'")
    with pytest.raises(DataFormatError) as exc_info:
        load_qrels(path, query_ids=["q1", "q2", "q4"])
    assert_error(exc_info, path, 6, "unknown query-id 'q3'")


@pytest.mark.parametrize("content", ["", "query-id\tcorpus-id\tscore\n\n"])
def test_load_qrels_empty(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "test.tsv", content)
    with pytest.raises(DataFormatError) as exc_info:
        load_qrels(path)
    assert_error(exc_info, path, None, "empty")


def test_load_qrels_invalid_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "test.tsv", b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq\xc3(\td1\t1\n")
    with pytest.raises(DataFormatError) as exc_info:
        load_qrels(path)
    assert_error(exc_info, path, 3, "UTF-8")


# ------------------------------------------------------------------------------------- folder + writer


def make_folder(root: Path) -> Path:
    return write_beir(
        root,
        corpus={"d1": ("T1", "text one"), "d2": ("", "text two"), "d3": ("Only title", ""),
                "d4": ("", "x\ty\nz")},
        queries={"q1": "first?", "q2": "second?", "q3": "third?"},
        qrels_by_split={"test": {"q1": {"d1": 1, "d3": 2}, "q2": {"d2": 0}},
                        "train": {"q3": {"d4": 1}, "q2": {"d2": 1}}},
    )


def test_write_then_load_beir(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "beir")
    assert root == tmp_path / "beir"
    corpus = {"d1": "T1 text one", "d2": "text two", "d3": "Only title", "d4": "x\ty\nz"}
    assert load_beir(root, "test") == RetrievalDataset(
        corpus=corpus, queries={"q1": "first?"}, qrels={"q1": {"d1": 1, "d3": 2}}
    )
    assert load_beir(root) == load_beir(root, "test")
    train = load_beir(root, "train")
    assert train.queries == {"q2": "second?", "q3": "third?"}
    assert train.qrels == {"q3": {"d4": 1}, "q2": {"d2": 1}}
    names = sorted(p.name for p in root.rglob("*"))
    assert names == ["corpus.jsonl", "qrels", "queries.jsonl", "test.tsv", "train.tsv"]


def test_write_beir_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown doc id"):
        write_beir(tmp_path, {"d1": ("", "x")}, {"q1": "y"}, {"test": {"q1": {"d9": 1}}})
    with pytest.raises(ValueError, match="unknown query id"):
        write_beir(tmp_path, {"d1": ("", "x")}, {"q1": "y"}, {"test": {"q9": {"d1": 1}}})
    with pytest.raises(ValueError, match="empty title and text"):
        write_beir(tmp_path, {"d1": ("", " ")}, {"q1": "y"}, {})
    with pytest.raises(ValueError, match="plain file name"):
        write_beir(tmp_path, {"d1": ("", "x")}, {"q1": "y"}, {"../x": {}})
    assert not any(tmp_path.iterdir())


def test_load_beir_missing_parts(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as exc_info:
        load_beir(tmp_path / "absent")
    assert_error(exc_info, tmp_path / "absent", None, "folder not found", "corpus.jsonl", "qrels/test.tsv")

    root = make_folder(tmp_path / "beir")
    with pytest.raises(DataFormatError) as exc_info:
        load_beir(root, "dev")
    assert_error(exc_info, root / "qrels" / "dev.tsv", None, "split 'dev'", "test", "train")

    (root / "queries.jsonl").unlink()
    with pytest.raises(DataFormatError) as exc_info:
        load_beir(root, "test")
    assert_error(exc_info, root / "queries.jsonl", None, "not found", "queries.jsonl")


def test_load_beir_qrels_checked_against_corpus(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "beir")
    write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td99\t1\n")
    with pytest.raises(DataFormatError) as exc_info:
        load_beir(root, "test")
    assert_error(exc_info, root / "qrels" / "test.tsv", 3, "unknown corpus-id 'd99'")


# ------------------------------------------------------------------------------------ property: garbage

_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_json_value = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_record = st.fixed_dictionaries(
    {},
    optional={"_id": st.one_of(st.sampled_from(["a", "b", ""]), _json_value),
              "title": st.one_of(st.text(max_size=5), _json_value),
              "text": st.one_of(st.text(max_size=8), _json_value)},
)
GARBAGE_LINE = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
    st.text(max_size=30).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
    _json_value.map(lambda v: json.dumps(v).encode("utf-8")),
    _record.map(lambda v: json.dumps(v).encode("utf-8")),
    st.just(b"[" * 5000),
)
GARBAGE_FILE = st.lists(GARBAGE_LINE, max_size=6).map(lambda lines: b"\n".join(lines))


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=GARBAGE_FILE)
def test_garbage_loads_or_raises_data_format_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "garbage.jsonl"
        path.write_bytes(data)
        for loader in (load_corpus, load_queries):
            try:
                result = loader(path)
            except DataFormatError as err:
                assert str(err).startswith(str(path))
            else:
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())
        qrels_path = Path(tmp) / "garbage.tsv"
        qrels_path.write_bytes(b"query-id\tcorpus-id\tscore\n" + data)
        try:
            load_qrels(qrels_path, corpus_ids=["a"], query_ids=["b"])
        except DataFormatError as err:
            assert str(err).startswith(str(qrels_path))
