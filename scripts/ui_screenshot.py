"""Run a pipeline through the kd-ui page in headless Chromium and save a screenshot of its results.

    python scripts/ui_screenshot.py --output-dir /work/ui-runs --run-name two-cycles \
        --set cycles=2 --set questions_per_cycle=3 --set threads=1 --png docs/img/ui_pipeline_2cycles.png

Starts ``kd.ui.app`` with uvicorn on 127.0.0.1 (a free port), fills the form (fields not given keep their Hydra
defaults), clicks Start pipeline, waits for the run to finish, and saves a full-page screenshot of the run's
results page (Chromium from Debian's ``chromium`` package, driven by Playwright). ``--existing`` only takes the
screenshots of a run already in the output folder; ``--start-png`` also saves the top of the start page."""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--run-name", required=True)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a form field, e.g. cycles=2")
    p.add_argument("--png", required=True)
    p.add_argument("--start-png", help="also save the start page (form, progress, runs), one screen high")
    p.add_argument("--existing", action="store_true", help="do not start a run: screenshot the finished one")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--timeout-min", type=float, default=30)
    args = p.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from kd.ui.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(args.output_dir), host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = "http://127.0.0.1:%d" % server.servers[0].sockets[0].getsockname()[1]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    start = time.monotonic()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(url)
            if not args.existing:
                start_run(page, args, start)
            page.wait_for_timeout(1000)  # the first server-sent event
            if args.start_png:
                page.screenshot(path=args.start_png)
            page.goto(f"{url}/runs/{args.run_name}")
            Path(args.png).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.png, full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    print(f"screenshot: {args.png} ({Path(args.png).stat().st_size / 1024:.0f} KB)")


def start_run(page, args, start: float) -> None:
    """Fill the form, click Start pipeline, wait until the run finishes (or fails)."""
    page.fill("[name=run_name]", args.run_name)
    for item in args.set:
        field, value = item.split("=", 1)
        if page.locator(f"select[name={field}]").count():
            page.select_option(f"select[name={field}]", value)
        else:
            page.fill(f"[name={field}]", value)
    page.click("#start-button")
    page.wait_for_selector("#results .relevancy-chart, #p-error:not([hidden])",
                           timeout=args.timeout_min * 60_000)
    if page.is_visible("#p-error"):
        raise SystemExit(f"the run failed: {page.inner_text('#p-error')}")
    print(f"finished in {time.monotonic() - start:.0f} s; {page.inner_text('#p-now')}")


if __name__ == "__main__":
    main()
