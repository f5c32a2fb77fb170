"""Convert the SciFact CSV release (a zip) into a BEIR folder (the BEIR "scifact" retrieval task).

The zip holds ``corpus_train.csv`` (doc_id, title, abstract, structured) and the claim files
``claims_train.csv`` / ``claims_validation.csv`` (id, claim, evidence_doc_id, evidence_label,
evidence_sentences, cited_doc_ids; several rows per claim). As in BEIR:

* corpus: the 5183 abstracts, title kept apart, text = the abstract's sentences joined by one space;
* queries: the claims (ids as in the CSV);
* qrels: claim -> each of its ``cited_doc_ids`` with relevance 1; split "train" is claims_train.csv
  (809 claims) and split "test" is claims_validation.csv (300 claims).

The ``abstract`` column is a numpy-printed array of strings, e.g. ``['First.'\\n 'Say "hi".' "It's"]``:
each element is a Python string literal (either quote type, backslash escapes). Each literal is
evaluated on its own: evaluating the whole cell would concatenate adjacent literals with no space.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kd.retrieval.data.beir import CORPUS_FILE, QRELS_DIR, QUERIES_FILE, write_beir
from kd.errors import DataFormatError
from kd.io import atomic_write_json

CORPUS_MEMBER = "corpus_train.csv"
SPLIT_MEMBERS = {"train": "claims_train.csv", "test": "claims_validation.csv"}
MANIFEST_FILE = "manifest.json"
CACHE_NAME = "scifact-beir"

_LITERAL = r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""
_LITERAL_RE = re.compile(_LITERAL, re.S)
_ARRAY_RE = re.compile(r"\[\s*(?:(?:%s)\s*)*\]" % _LITERAL, re.S)
_ID_LIST_RE = re.compile(r"\[\s*(?:[0-9]+(?:\s+[0-9]+)*)?\s*\]")


@dataclass(frozen=True)
class _Claim:
    text: str
    cited: tuple[str, ...]
    line: int


def parse_sentence_array(cell: str) -> list[str]:
    """Sentences of a numpy-printed string array (``['a.'\\n 'b.']``), each stripped, blanks dropped.

    Raises ValueError when ``cell`` is not such an array.
    """
    if not _ARRAY_RE.fullmatch(cell.strip()):
        raise ValueError("abstract is not a printed list of quoted sentences like ['...' '...']")
    sentences = []
    for match in _LITERAL_RE.finditer(cell):
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"bad string literal {match.group(0)[:60]!r}: {exc}") from None
        value = value.strip()
        if value:
            sentences.append(value)
    return sentences


def parse_id_list(cell: str) -> tuple[str, ...]:
    """Ids of a numpy-printed integer array (``[123]``, ``[ 5 11705328]``, ``[]``), as strings."""
    if not _ID_LIST_RE.fullmatch(cell.strip()):
        raise ValueError(f"expected a list of integer ids like [123 456], got {cell[:60]!r}")
    return tuple(str(int(tok)) for tok in cell.strip()[1:-1].split())


def _csv_rows(zf: zipfile.ZipFile, zip_path: Path, member: str, columns: tuple[str, ...]):
    """Yield ``(start_line, record)`` for each CSV record of ``member`` (line = the record's first line)."""
    where = f"{zip_path}/{member}"
    try:
        raw = zf.read(member)
    except KeyError:
        raise DataFormatError(where, None, f"file not found in the zip (expected {member})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(where, line, f"not valid UTF-8 ({exc.reason})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataFormatError(where, None, "file is empty")
        if tuple(h.strip().lstrip("\ufeff") for h in header) != columns:
            got = ",".join(header)[:120]
            raise DataFormatError(where, 1, f"expected columns {','.join(columns)}, got {got}")
        previous_end = reader.line_num
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not record:
                continue
            if len(record) != len(columns):
                raise DataFormatError(where, start, f"expected {len(columns)} columns, got {len(record)}")
            yield start, dict(zip(columns, record))
    except csv.Error as exc:
        raise DataFormatError(where, reader.line_num, f"malformed CSV: {exc}") from None


def _read_corpus(zf: zipfile.ZipFile, zip_path: Path) -> dict[str, tuple[str, str]]:
    where = f"{zip_path}/{CORPUS_MEMBER}"
    corpus: dict[str, tuple[str, str]] = {}
    first_line: dict[str, int] = {}
    for line, row in _csv_rows(zf, zip_path, CORPUS_MEMBER, ("doc_id", "title", "abstract", "structured")):
        doc_id = row["doc_id"].strip()
        if not doc_id.isdigit():
            raise DataFormatError(where, line, f"doc_id must be an integer, got {doc_id[:40]!r}")
        doc_id = str(int(doc_id))
        if doc_id in first_line:
            raise DataFormatError(
                where, line, f"duplicate doc_id {doc_id} (first on line {first_line[doc_id]})"
            )
        try:
            sentences = parse_sentence_array(row["abstract"])
        except ValueError as exc:
            raise DataFormatError(where, line, str(exc)) from None
        title, text = row["title"].strip(), " ".join(sentences)
        if not title and not text:
            raise DataFormatError(where, line, f"document {doc_id} has neither title nor abstract")
        corpus[doc_id] = (title, text)
        first_line[doc_id] = line
    return corpus


def _read_claims(zf: zipfile.ZipFile, zip_path: Path, member: str, corpus: dict) -> dict[str, _Claim]:
    where = f"{zip_path}/{member}"
    columns = ("id", "claim", "evidence_doc_id", "evidence_label", "evidence_sentences", "cited_doc_ids")
    claims: dict[str, _Claim] = {}
    for line, row in _csv_rows(zf, zip_path, member, columns):
        claim_id = row["id"].strip()
        if not claim_id.isdigit():
            raise DataFormatError(where, line, f"id must be an integer, got {claim_id[:40]!r}")
        claim_id = str(int(claim_id))
        text = row["claim"].strip()
        if not text:
            raise DataFormatError(where, line, f"claim {claim_id} has empty text")
        try:
            cited = parse_id_list(row["cited_doc_ids"])
        except ValueError as exc:
            raise DataFormatError(where, line, f"cited_doc_ids: {exc}") from None
        if not cited:
            raise DataFormatError(where, line, f"claim {claim_id} cites no document")
        for doc_id in cited:
            if doc_id not in corpus:
                raise DataFormatError(where, line, f"claim {claim_id} cites doc {doc_id}, which is not in "
                                                   f"{CORPUS_MEMBER}")
        previous = claims.get(claim_id)
        if previous is None:
            claims[claim_id] = _Claim(text, cited, line)
        elif (previous.text, set(previous.cited)) != (text, set(cited)):
            raise DataFormatError(where, line, f"claim {claim_id} differs from its earlier row on line "
                                               f"{previous.line} (claim text or cited_doc_ids)")
    if not claims:
        raise DataFormatError(where, None, "no claims in file")
    return claims


def _is_complete(folder: Path) -> bool:
    required = [MANIFEST_FILE, CORPUS_FILE, QUERIES_FILE] + [f"{QRELS_DIR}/{s}.tsv" for s in SPLIT_MEMBERS]
    return all((folder / name).is_file() for name in required)


def convert_scifact(zip_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the BEIR folder of SciFact at ``out_dir`` and return it (an existing complete one is reused).

    The folder is built in a temporary sibling and renamed into place, so ``out_dir`` is either
    absent or complete. It holds corpus.jsonl, queries.jsonl, qrels/train.tsv, qrels/test.tsv and a
    manifest.json with the counts. Raises DataFormatError for a malformed release and FileExistsError
    when ``out_dir`` exists but is not a complete conversion.
    """
    zip_path, out = Path(zip_path), Path(out_dir)
    if out.exists():
        if _is_complete(out):
            return out
        raise FileExistsError(f"{out} exists but is not a complete SciFact BEIR folder; remove it and retry")
    if not zip_path.is_file():
        raise DataFormatError(zip_path, None, "file not found (expected the SciFact release zip scifact.zip)")
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise DataFormatError(zip_path, None, f"not a zip file: {exc}") from None
    with zf:
        corpus = _read_corpus(zf, zip_path)
        claims_by_split = {split: _read_claims(zf, zip_path, member, corpus)
                           for split, member in SPLIT_MEMBERS.items()}

    queries: dict[str, str] = {}
    for split, claims in claims_by_split.items():
        for claim_id, claim in claims.items():
            if queries.setdefault(claim_id, claim.text) != claim.text:
                raise DataFormatError(f"{zip_path}/{SPLIT_MEMBERS[split]}", claim.line,
                                      f"claim id {claim_id} names a different claim in another split")
    qrels_by_split = {split: {cid: {doc: 1 for doc in c.cited} for cid, c in claims.items()}
                      for split, claims in claims_by_split.items()}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; the result is a shared data folder
        write_beir(tmp, corpus, queries, qrels_by_split)
        atomic_write_json(tmp / MANIFEST_FILE, {
            "source": zip_path.name,
            "source_bytes": zip_path.stat().st_size,
            "docs": len(corpus),
            "queries": {split: len(q) for split, q in qrels_by_split.items()},
            "qrels": {split: sum(len(d) for d in q.values()) for split, q in qrels_by_split.items()},
        })
        try:
            os.rename(tmp, out)
        except OSError:
            if _is_complete(out):  # another process finished first
                return out
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_scifact_beir(zip_path: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """Return ``cache_dir/scifact-beir``, converting ``zip_path`` into it on the first call."""
    return convert_scifact(zip_path, Path(cache_dir) / CACHE_NAME)


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest.json of a converted folder: source, docs, queries/qrels counts per split."""
    return json.loads((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))
