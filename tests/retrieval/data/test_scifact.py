"""Tests of kd.retrieval.data.scifact (and its CLI): a tiny synthetic release, error lines, and the real zip."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import pytest

from kd.cli.convert_scifact import main as convert_main
from kd.retrieval.data.beir import load_beir, load_corpus, load_queries
from kd.errors import DataFormatError
from kd.retrieval.data.scifact import (
    convert_scifact,
    ensure_scifact_beir,
    parse_id_list,
    parse_sentence_array,
    read_manifest,
)

CLAIM_COLUMNS = ["id", "claim", "evidence_doc_id", "evidence_label", "evidence_sentences", "cited_doc_ids"]

# numpy-printed abstracts: both quote types, escaped quotes, backslash escapes, several lines.
ABSTRACT_1 = "['First sentence.'\n 'It\\'s \"quoted\".'\n \"Cole's method.\"\n 'Ends with newline.   \\n']"
ABSTRACT_2 = "['Only one sentence with a tab\\tand é.']"
ABSTRACT_3 = "[]"

CORPUS_ROWS = [
    ["11", "Title one", ABSTRACT_1, "False"],   # lines 2-5
    ["22", "Title two", ABSTRACT_2, "True"],    # line 6
    ["33", "Title three", ABSTRACT_3, "False"],  # line 7
]
TRAIN_ROWS = [
    ["0", "Claim zero.", "", "", "[]", "[11]"],                       # line 2
    ["2", "Claim two,\nspanning two lines.", "22", "SUPPORT", "[0]", "[22 11]"],  # lines 3-4
    ["2", "Claim two,\nspanning two lines.", "11", "SUPPORT", "[1]", "[22 11]"],  # lines 5-6 (same claim)
]
TEST_ROWS = [
    ["1", "Claim one.", "", "", "[]", "[ 33 11]"],
    ["1", "Claim one.", "33", "CONTRADICT", "[2 5]", "[ 33 11]"],
]


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def make_zip(
    path: Path, corpus=CORPUS_ROWS, train=TRAIN_ROWS, test=TEST_ROWS, skip: str | None = None
) -> Path:
    members = {
        "corpus_train.csv": csv_text(["doc_id", "title", "abstract", "structured"], corpus),
        "claims_train.csv": csv_text(CLAIM_COLUMNS, train),
        "claims_validation.csv": csv_text(CLAIM_COLUMNS, test),
        "claims_test.csv": csv_text(CLAIM_COLUMNS, [["5", "Unlabelled.", "", "", "", "[]"]]),
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            if name != skip:
                zf.writestr(name, text)
    return path


def test_parsers() -> None:
    assert parse_sentence_array(ABSTRACT_1) == [
        "First sentence.", 'It\'s "quoted".', "Cole's method.", "Ends with newline.",
    ]
    assert parse_sentence_array("['a' 'b']") == ["a", "b"]  # no literal concatenation ("ab")
    assert parse_sentence_array(ABSTRACT_3) == []
    with pytest.raises(ValueError):
        parse_sentence_array("['unterminated]")
    with pytest.raises(ValueError):
        parse_sentence_array("plain text")
    assert parse_id_list("[31715818]") == ("31715818",)
    assert parse_id_list("[ 5152028 11705328]") == ("5152028", "11705328")
    assert parse_id_list("[]") == ()
    with pytest.raises(ValueError):
        parse_id_list("[1, 2]")


def test_convert_synthetic(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "scifact.zip")
    out = convert_scifact(zip_path, tmp_path / "out")
    assert out == tmp_path / "out"
    assert load_corpus(out / "corpus.jsonl") == {
        "11": "Title one First sentence. It's \"quoted\". Cole's method. Ends with newline.",
        "22": "Title two Only one sentence with a tab\tand é.",
        "33": "Title three",
    }
    assert load_queries(out / "queries.jsonl") == {
        "0": "Claim zero.", "2": "Claim two,\nspanning two lines.", "1": "Claim one.",
    }
    train, test = load_beir(out, "train"), load_beir(out, "test")
    assert train.queries == {"0": "Claim zero.", "2": "Claim two,\nspanning two lines."}
    assert train.qrels == {"0": {"11": 1}, "2": {"22": 1, "11": 1}}
    assert test.queries == {"1": "Claim one."}
    assert test.qrels == {"1": {"33": 1, "11": 1}}
    assert read_manifest(out) == {"source": "scifact.zip", "source_bytes": zip_path.stat().st_size, "docs": 3,
                                  "queries": {"train": 2, "test": 1}, "qrels": {"train": 3, "test": 2}}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dir left


def test_convert_reuses_complete_folder(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "scifact.zip")
    out = ensure_scifact_beir(zip_path, tmp_path / "cache")
    assert out == tmp_path / "cache" / "scifact-beir"
    stamp = (out / "corpus.jsonl").stat().st_mtime_ns
    zip_path.unlink()  # a reuse must not need the zip
    assert ensure_scifact_beir(zip_path, tmp_path / "cache") == out
    assert (out / "corpus.jsonl").stat().st_mtime_ns == stamp


def test_convert_refuses_incomplete_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "corpus.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="not a complete"):
        convert_scifact(make_zip(tmp_path / "scifact.zip"), tmp_path / "out")


def expect_error(zip_path: Path, out: Path, member: str | None, line: int | None, *words: str) -> None:
    with pytest.raises(DataFormatError) as exc_info:
        convert_scifact(zip_path, out)
    err = exc_info.value
    where = f"{zip_path}/{member}" if member else str(zip_path)
    assert err.line == line
    assert str(err).startswith(f"{where}:{line}: " if line is not None else f"{where}: "), str(err)
    for word in words:
        assert word in str(err), (word, str(err))
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".out")] == []


def test_cited_doc_missing_names_member_and_line(tmp_path: Path) -> None:
    bad_test = TEST_ROWS + [["3", "Claim three,\nwith a break.", "", "", "[]", "[11]"],
                            ["7", "Claim seven.", "", "", "[]", "[11 999]"]]  # lines 4-5, then line 6
    zip_path = make_zip(tmp_path / "scifact.zip", test=bad_test)
    expect_error(zip_path, tmp_path / "out", "claims_validation.csv", 6, "cites doc 999", "corpus_train.csv")


def test_corpus_row_errors_name_line(tmp_path: Path) -> None:
    bad = CORPUS_ROWS + [["44", "T", "['ok' 'unterminated]", "False"]]  # line 8
    expect_error(make_zip(tmp_path / "a.zip", corpus=bad), tmp_path / "out", "corpus_train.csv", 8,
                 "printed list")
    dup = CORPUS_ROWS + [["11", "T", "['x']", "False"]]
    expect_error(make_zip(tmp_path / "b.zip", corpus=dup), tmp_path / "out", "corpus_train.csv", 8,
                 "duplicate doc_id 11", "first on line 2")
    empty = CORPUS_ROWS + [["55", " ", "[]", "False"]]
    expect_error(make_zip(tmp_path / "c.zip", corpus=empty), tmp_path / "out", "corpus_train.csv", 8,
                 "neither title nor abstract")
    short = CORPUS_ROWS + [["66", "T"]]
    expect_error(make_zip(tmp_path / "d.zip", corpus=short), tmp_path / "out", "corpus_train.csv", 8,
                 "expected 4 columns, got 2")


def test_claim_row_errors_name_line(tmp_path: Path) -> None:
    changed = TRAIN_ROWS + [["0", "Claim zero, edited.", "", "", "[]", "[11]"]]  # line 7
    expect_error(make_zip(tmp_path / "a.zip", train=changed), tmp_path / "out", "claims_train.csv", 7,
                 "claim 0 differs", "line 2")
    bad_ids = TRAIN_ROWS + [["8", "Claim.", "", "", "[]", "[11, 22]"]]
    expect_error(make_zip(tmp_path / "b.zip", train=bad_ids), tmp_path / "out", "claims_train.csv", 7,
                 "cited_doc_ids")
    no_cites = TRAIN_ROWS + [["8", "Claim.", "", "", "[]", "[]"]]
    expect_error(make_zip(tmp_path / "c.zip", train=no_cites), tmp_path / "out", "claims_train.csv", 7,
                 "cites no document")


def test_missing_inputs(tmp_path: Path) -> None:
    expect_error(tmp_path / "absent.zip", tmp_path / "out", None, None, "not found", "scifact.zip")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    expect_error(tmp_path / "bad.zip", tmp_path / "out", None, None, "not a zip")
    zip_path = make_zip(tmp_path / "scifact.zip", skip="claims_validation.csv")
    expect_error(zip_path, tmp_path / "out", "claims_validation.csv", None, "not found in the zip")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zip_path = make_zip(tmp_path / "scifact.zip")
    assert convert_main([str(zip_path), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "train: 3 docs, 2 queries, 3 qrels" in out and "test: 3 docs, 1 queries, 2 qrels" in out
    assert convert_main([str(tmp_path / "absent.zip"), str(tmp_path / "out2")]) == 2
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ real data


def shared_dir() -> Path:
    env = os.environ.get("KD_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[4] / "shared"


def test_real_scifact(tmp_path: Path) -> None:
    zip_path = shared_dir() / "data" / "scifact" / "scifact.zip"
    if not zip_path.is_file():
        pytest.skip(f"SciFact release not found at {zip_path} (set KD_SHARED_DIR to the shared folder)")
    out = ensure_scifact_beir(zip_path, tmp_path)
    train, test = load_beir(out, "train"), load_beir(out, "test")
    assert len(train.corpus) == len(test.corpus) == 5183
    assert len(train.queries) == 809 and len(test.queries) == 300
    for split in (train, test):
        assert set(split.qrels) == set(split.queries)
        pairs = [(doc, rel) for docs in split.qrels.values() for doc, rel in docs.items()]
        assert all(doc in split.corpus and rel == 1 for doc, rel in pairs)
    assert sum(len(d) for d in train.qrels.values()) == 919  # BEIR scifact: 919 train / 339 test judgements
    assert sum(len(d) for d in test.qrels.values()) == 339
    assert not set(train.queries) & set(test.queries)
    text = train.corpus["4983"]
    assert text.startswith("Microstructural development of human newborn cerebral white matter")
    assert "functional disabilities. A line scan diffusion-weighted" in text  # sentences joined by one space
