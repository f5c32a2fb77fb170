"""``kd-convert-scifact ZIP OUT_DIR``: turn the SciFact release zip into a BEIR folder and print counts."""

from __future__ import annotations

import argparse
import sys

from kd.retrieval.data.beir import load_beir
from kd.errors import DataFormatError
from kd.retrieval.data.scifact import SPLIT_MEMBERS, convert_scifact


def main(argv: list[str] | None = None) -> int:
    """Convert, reload each split to check it and print its counts; exit status 0, or 2 on bad data."""
    parser = argparse.ArgumentParser(prog="kd-convert-scifact", description=__doc__)
    parser.add_argument("zip_path", help="the SciFact release zip (e.g. ../shared/data/scifact/scifact.zip)")
    parser.add_argument(
        "out_dir", help="BEIR folder to write (reused when it already holds a complete conversion)"
    )
    args = parser.parse_args(argv)
    try:
        out = convert_scifact(args.zip_path, args.out_dir)
        print(f"BEIR folder: {out}")
        for split in SPLIT_MEMBERS:
            data = load_beir(out, split)
            n_qrels = sum(len(docs) for docs in data.qrels.values())
            print(f"{split}: {len(data.corpus)} docs, {len(data.queries)} queries, {n_qrels} qrels")
    except (DataFormatError, FileExistsError) as exc:
        print(f"kd-convert-scifact: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
