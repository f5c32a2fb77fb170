"""End to end in headless Chromium (Debian's ``chromium``, driven by Playwright, no browser download): open the
page, see the teacher-unreachable error in plain words, start a tiny real pipeline (1 cycle, 2 questions, fake
OpenAI-compatible teacher on 127.0.0.1, tiny random student), watch its live progress, and check that the chart and
the Q&A table show the numbers of the run's report.json. Screenshot: artifacts/ui_e2e_tiny.png (gitignored)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from ui_helpers import (FAST_EXTRA, LiveServer, fast_settings, kb_dir, openai_server, smollm_tokenizer_dir,  # noqa: F401
                        tiny_student)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fill(page, settings: dict) -> None:
    page.select_option("select[name=teacher]", settings["teacher"])  # sets the back-end's default model and URL
    page.eval_on_selector("#start-form details", "d => { d.open = true; }")
    for key, value in settings.items():
        if key not in ("teacher", "student"):
            page.fill(f"[name={key}]", str(value))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install chromium)")
def test_start_pipeline_in_the_browser(tiny_student, openai_server, kb_dir, tmp_path, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extra)")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-ui")
    server = LiveServer(tmp_path / "outputs")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server.url)
            assert page.input_value("[name=cycles]") == "2"  # the Hydra default

            # 1. teacher unreachable: the run fails and the page says so in plain words
            down = f"http://127.0.0.1:{_closed_port()}/v1"
            bad = fast_settings(tiny_student, down, kb_dir, run_name="teacher-down")
            bad["extra_overrides"] += "\nteacher.max_retries=0"
            _fill(page, bad)
            page.click("#start-button")
            page.wait_for_selector("#p-error:not([hidden])", timeout=60_000)
            error = page.inner_text("#p-error")
            assert error.startswith("The teacher could not be reached or kept failing: teacher "
                                    f"{down}/chat/completions failed after 1 attempts")
            assert "Connection refused" in error
            assert page.inner_text("tr[data-run=teacher-down] .status") == "failed"

            # 2. a tiny real run; the teacher's first reply is held 2 s so that the live progress shows cycle 1
            openai_server.script = [("sleep", 2)]
            # (no held-out set here: its steps come before cycle 1 and would take the held reply)
            _fill(page, fast_settings(tiny_student, openai_server.url, kb_dir, run_name="tiny", extra_overrides=(
                FAST_EXTRA.replace("eval.heldout_per_topic=1", "eval.heldout_per_topic=0"))))
            page.click("#start-button")
            page.wait_for_function("document.getElementById('p-now').textContent.startsWith("
                                   "'Cycle 1 of 1: step cycle1.questions running')", timeout=60_000)
            assert page.is_disabled("#start-button")  # one run at a time
            page.wait_for_selector("#results .relevancy-chart", timeout=90_000)
            assert page.inner_text("#p-status") == "finished"

            report = json.loads((tmp_path / "outputs" / "tiny" / "report.json").read_text())
            (cycle,) = report["cycles"]
            for series in ("baseline", "finetuned"):
                value = cycle[series]["mean_unparseable_as_zero"]
                sel = f"#results .bar-value[data-cycle='1'][data-series='{series}']"
                assert page.text_content(sel) == f"{value:.3f}"  # SVG text
                bar = f"#results rect.bar[data-cycle='1'][data-series='{series}']"
                assert float(page.get_attribute(bar, "data-value")) == pytest.approx(value, abs=1e-6)
            row = "#cycle-table tr[data-cycle='1']"
            assert page.inner_text(f"{row} .improvement") == f"{cycle['improvement_abs']:+.3f}"
            assert page.inner_text(f"{row} .train-seconds") == f"{report['timings']['cycle1.finetune']:.1f}"
            losses = page.get_attribute("#results .loss-line[data-cycle='1']", "data-losses").split(",")
            assert [float(x) for x in losses] == pytest.approx(cycle["train_losses"], abs=1e-6)
            rows = page.query_selector_all("#qa-table tbody tr")
            assert len(rows) == len(cycle["samples"]) == 2
            for tr, sample in zip(rows, cycle["samples"]):
                assert tr.get_attribute("data-id") == sample["id"]
                assert tr.query_selector(".question").inner_text().startswith(sample["question"])
                assert tr.query_selector(".reference").inner_text() == sample["reference"].strip()
                assert tr.query_selector(".baseline-answer").inner_text() == sample["baseline_answer"].strip()
                for side in ("baseline", "finetuned"):
                    score = tr.query_selector(f".{side}-score").inner_text().split("\n")[0]
                    assert score == ("n/a" if sample[f"{side}_score"] is None else f"{sample[f'{side}_score']:.3f}")
            assert page.inner_text("tr[data-run=tiny] .status") == "finished"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui_e2e_tiny.png"), full_page=True)
            browser.close()
    finally:
        server.close()
