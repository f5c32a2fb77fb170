"""Tests of kd.retrieval.data.triplets: TSV / JSONL triplets by id and by text, and one error per bad line."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kd.errors import DataFormatError
from kd.retrieval.data.triplets import Triplet, doc_text_id, load_triplets, query_text_id

CORPUS = {"d1": "doc one", "d2": "doc two", "d3": "doc three"}
QUERIES = {"q1": "query one", "q2": "query two"}


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def assert_error(exc_info: pytest.ExceptionInfo, path: Path, line: int | None, *words: str) -> None:
    err = exc_info.value
    assert err.line == line
    assert str(err).startswith(f"{path}:{line}: " if line is not None else f"{path}: "), str(err)
    for word in words:
        assert word in str(err), (word, str(err))


def sha(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def test_text_ids() -> None:
    assert query_text_id("hello") == "q-aaf4c61ddcc5e8a2"
    assert doc_text_id("hello") == "d-aaf4c61ddcc5e8a2"


# ---------------------------------------------------------------------------------------------- by id


def test_tsv_by_id_with_header(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "query\tpositive\tnegative\nq1\td1\td2\n\nq2\td3\td1\r\n")
    for by in ("id", "auto"):
        triplets, corpus, queries = load_triplets(path, CORPUS, QUERIES, by=by)
        assert triplets == [Triplet("q1", "d1", ("d2",)), Triplet("q2", "d3", ("d1",))]
        assert corpus == CORPUS and queries == QUERIES
        assert corpus is not CORPUS and queries is not QUERIES


def test_jsonl_by_id(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.jsonl",
        '{"query": "q1", "positive": "d1", "negative": "d2"}\n'
        '{"query": "q2", "positive": "d2", "negatives": ["d1", "d3"]}\n'
        '{"query": "q2", "positive": "d3", "negatives": []}\n'
        '{"query": "q1", "positive": "d3"}\n',
    )
    triplets, corpus, queries = load_triplets(path, CORPUS, QUERIES)
    assert triplets == [
        Triplet("q1", "d1", ("d2",)),
        Triplet("q2", "d2", ("d1", "d3")),
        Triplet("q2", "d3", ()),
        Triplet("q1", "d3", ()),
    ]
    assert (corpus, queries) == (CORPUS, QUERIES)


def test_by_id_unknown_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "q1\td1\td2\n\nq1\td1\td9\n")
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(path, CORPUS, QUERIES, by="id")
    assert_error(exc_info, path, 3, "unknown negative doc id 'd9'")
    content = '{"query": "q1", "positive": "d1"}\n{"query": "q7", "positive": "d1"}\n'
    path = write(tmp_path / "u.jsonl", content)
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(path, CORPUS, QUERIES, by="auto")
    assert_error(exc_info, path, 2, "unknown query id 'q7'")
    path = write(tmp_path / "v.jsonl", '{"query": "q1", "positive": "zz", "negatives": []}\n')
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(path, CORPUS, QUERIES, by="id")
    assert_error(exc_info, path, 1, "unknown positive doc id 'zz'")


def test_by_id_needs_tables_and_valid_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "q1\td1\td2\n")
    with pytest.raises(ValueError, match="needs both"):
        load_triplets(path, CORPUS, None, by="id")
    with pytest.raises(ValueError, match="by must be"):
        load_triplets(path, CORPUS, QUERIES, by="ids")


# -------------------------------------------------------------------------------------------- by text


def test_tsv_by_text_dedups_and_merges(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "what is a cat?\tA cat is an animal.\tDogs bark.\n"
                                     "what is a cat?\tDogs bark.\tdoc one\n")
    triplets, corpus, queries = load_triplets(path, CORPUS, QUERIES)  # auto -> text ("what is a cat?": no id)
    q = sha("q-", "what is a cat?")
    cat, dog, one = sha("d-", "A cat is an animal."), sha("d-", "Dogs bark."), sha("d-", "doc one")
    assert triplets == [Triplet(q, cat, (dog,)), Triplet(q, dog, (one,))]
    assert corpus == {**CORPUS, cat: "A cat is an animal.", dog: "Dogs bark.", one: "doc one"}
    assert queries == {**QUERIES, q: "what is a cat?"}
    assert CORPUS == {"d1": "doc one", "d2": "doc two", "d3": "doc three"}  # inputs untouched


def test_jsonl_by_text_without_tables(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"query": "q1", "positive": "d1", "negatives": ["d2", "d1"]}\n')
    triplets, corpus, queries = load_triplets(path)  # no tables: auto -> text, even if fields look like ids
    assert triplets == [Triplet(sha("q-", "q1"), sha("d-", "d1"), (sha("d-", "d2"), sha("d-", "d1")))]
    assert corpus == {sha("d-", "d1"): "d1", sha("d-", "d2"): "d2"}
    assert queries == {sha("q-", "q1"): "q1"}


def test_auto_decides_on_first_record_only(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "q1\td1\tnot an id\nq1\td1\td2\n")
    triplets, _, _ = load_triplets(path, CORPUS, QUERIES)
    assert triplets[1] == Triplet(sha("q-", "q1"), sha("d-", "d1"), (sha("d-", "d2"),))
    path = write(tmp_path / "u.tsv", "q1\td1\td2\nq1\td1\tnot an id\n")
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(path, CORPUS, QUERIES)
    assert_error(exc_info, path, 2, "unknown negative doc id")


def test_by_text_id_clash(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "q\tsome doc\tother\n")
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(path, {sha("d-", "some doc"): "a different text"}, {}, by="text")
    assert_error(exc_info, path, 1, "already names a different text")


# --------------------------------------------------------------------------------------------- errors

AB = '{"query": "a", "positive": "b"'  # a JSONL record's start, for the cases below


@pytest.mark.parametrize(
    ("name", "content", "line", "words"),
    [
        ("t.tsv", "q1\td1\td2\nq1\td1\n", 2, ["3 tab-separated columns", "got 2"]),
        ("t.tsv", "query\tpositive\tnegative\n\nq1\td1\td2\td3\n", 3, ["got 4"]),
        ("t.tsv", "q1\td1\td2\nq1\t \td2\n", 2, ["empty positive"]),
        ("t.tsv", "\tx\ty\n", 1, ["empty query"]),
        ("t.tsv", "q\tx\t\n", 1, ["empty negative"]),
        ("t.tsv", "q1\td1\td2\nquery\tpositive\tnegative\tx\n", 2, ["got 4"]),
        ("t.jsonl", '{"query": "a", "positive": "b"}\n{"query": "a", \n', 2, ["malformed JSON"]),
        ("t.jsonl", '["a", "b", "c"]\n', 1, ["JSON object"]),
        ("t.jsonl", '{"positive": "b"}\n', 1, ["missing field 'query'"]),
        ("t.jsonl", '{"query": "a"}\n', 1, ["missing field 'positive'"]),
        ("t.jsonl", '{"query": 1, "positive": "b"}\n', 1, ["'query' must be a string"]),
        ("t.jsonl", '{"query": "a", "positive": ""}\n', 1, ["'positive' is empty"]),
        ("t.jsonl", AB + ', "negative": ["c"]}\n', 1, ["'negative' must be a string"]),
        ("t.jsonl", AB + ', "negatives": "c"}\n', 1, ["'negatives' must be an array"]),
        ("t.jsonl", AB + ', "negatives": ["c", 3]}\n', 1, ["negatives[1] must be a string"]),
        ("t.jsonl", AB + ', "negatives": ["c", " "]}\n', 1, ["negatives[1] is empty"]),
        ("t.jsonl", AB + ', "negative": "c", "negatives": []}\n', 1, ["not both"]),
        ("t.jsonl", AB + '}\n\n{"query": "a", "pos": "b"}\n', 3, ["unknown key", "pos"]),
    ],
)
def test_errors(tmp_path: Path, name: str, content: str, line: int, words: list[str]) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(path, by="text")
    assert_error(exc_info, path, line, *words)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(tmp_path / "missing.tsv")
    assert_error(exc_info, tmp_path / "missing.tsv", None, "not found")
    for name, content in [("e.tsv", ""), ("h.tsv", "query\tpositive\tnegative\n\n"), ("e.jsonl", "\n\n")]:
        path = write(tmp_path / name, content)
        with pytest.raises(DataFormatError) as exc_info:
            load_triplets(path)
        assert_error(exc_info, path, None, "empty")
    path = write(tmp_path / "t.csv", "a,b,c\n")
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(path)
    assert_error(exc_info, path, None, "extension '.csv'")
    path = write(tmp_path / "bad.tsv", b"q\td\tn\nq\t\xe9\tn\n")
    with pytest.raises(DataFormatError) as exc_info:
        load_triplets(path)
    assert_error(exc_info, path, 2, "UTF-8")


# ------------------------------------------------------------------------------------ property: garbage

_json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_field = st.one_of(st.sampled_from(["q1", "d1", "d2", "", " "]), _json_value)
_record = st.fixed_dictionaries(
    {}, optional={"query": _field, "positive": _field, "negative": _field,
                  "negatives": st.one_of(st.lists(_field, max_size=3), _field)},
)
GARBAGE_LINE = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
    st.lists(st.sampled_from(["q1", "d1", "d2", "x", "", " ", "query", "positive", "negative"]), max_size=5)
    .map(lambda parts: "\t".join(parts).encode()),
    _json_value.map(lambda v: json.dumps(v).encode("utf-8")),
    _record.map(lambda v: json.dumps(v).encode("utf-8")),
)
GARBAGE_FILE = st.lists(GARBAGE_LINE, max_size=6).map(lambda lines: b"\n".join(lines))


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=GARBAGE_FILE, by=st.sampled_from(["auto", "id", "text"]))
def test_garbage_loads_or_raises_data_format_error(data: bytes, by: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("garbage.tsv", "garbage.jsonl"):
            path = Path(tmp) / name
            path.write_bytes(data)
            try:
                triplets, corpus, queries = load_triplets(path, CORPUS, QUERIES, by=by)
            except DataFormatError as err:
                assert str(err).startswith(str(path))
            else:
                for t in triplets:
                    assert t.query_id in queries and t.positive_id in corpus
                    assert all(n in corpus for n in t.negative_ids)
