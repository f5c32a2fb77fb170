"""``kd-report <multirun dir> [--out DIR]``: one table (CSV + Markdown) and plots for a Hydra sweep."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kd-report", description=__doc__)
    parser.add_argument("multirun_dir", help="the sweep folder (multirun/<time>) holding one folder per job")
    parser.add_argument("--out", default=None, help="where to write the report (default: the sweep folder)")
    args = parser.parse_args(argv)
    from kd.sweep.report import collect, to_markdown, write_report

    try:
        paths = write_report(args.multirun_dir, args.out)
    except FileNotFoundError as error:
        print(f"kd-report: {error}", file=sys.stderr)
        return 2
    rows = collect(args.multirun_dir)
    print(to_markdown(rows))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
