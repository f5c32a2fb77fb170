"""``kd-ui``: serve the "Start pipeline" page (settings, Start, live progress, runs, results) on 127.0.0.1.

    kd-ui                          # http://127.0.0.1:8765, runs under ./outputs
    kd-ui --port 9000 --output-dir outputs/ui
    kd-ui --host 0.0.0.0           # explicit: reachable from other machines (no authentication!)
"""

from __future__ import annotations

import argparse
import logging
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

log = logging.getLogger("kd.ui")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kd-ui", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1: this machine only; anything else is reachable from the "
                        "network and the page has no login)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--output-dir", default="outputs", help="folder of the runs (one sub-folder per run; default outputs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvicorn

        from kd.ui.app import create_app
    except ImportError as exc:
        print(f"kd-ui: error: {exc}; install the ui extra: pip install -e '.[ui]'", file=sys.stderr)
        sys.exit(2)
    if args.host not in LOCAL_HOSTS:  # a deliberate choice: say what it means
        print(f"kd-ui: warning: binding {args.host}: the page (which starts jobs on this machine) is reachable from "
              "other machines and has no login", file=sys.stderr)
    local = args.host in LOCAL_HOSTS
    app = create_app(args.output_dir, allowed_hosts=["127.0.0.1", "localhost", "::1"] if local else None)
    print(f"kd-ui: http://{args.host}:{args.port}/  (runs in {app.state.output_dir})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
