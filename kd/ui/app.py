"""The "Start pipeline" web app (FastAPI): settings form prefilled from the Hydra defaults, Start / Stop / Resume,
live progress pushed as server-sent events, the runs in the output folder, and a results view per run.

    create_app(output_dir="outputs")   # served by ``kd-ui`` (kd/cli/ui.py) on 127.0.0.1
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from kd.ui import charts
from kd.ui.runner import PipelineRunner, RunRefused
from kd.ui.runs import list_runs, load_report, run_state
from kd.ui.settings import RUN_NAME, Settings, SettingsError, check, form_defaults, settings_dict, to_overrides

HERE = Path(__file__).resolve().parent
EVENT_INTERVAL_S = 0.5


def _settings_from(body: Any) -> Settings:
    if not isinstance(body, dict):
        raise SettingsError("The request must be a JSON object of settings.")
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise SettingsError(f"Unknown setting(s): {unknown}.")
    values = dict(body)
    for key in ("cycles", "questions_per_cycle", "threads"):
        v = values.get(key)
        if v in (None, "") and key == "threads":
            values[key] = None
        elif v is not None:
            try:
                values[key] = int(str(v).strip())
            except ValueError:
                label = key.replace("_", " ").capitalize()
                raise SettingsError(f"{label}: must be a whole number, got {v!r}.") from None
    for key in ("run_name", "kb_source", "topics", "teacher", "teacher_model", "teacher_base_url", "student",
                "student_model", "extra_overrides"):
        if key in values and values[key] is not None:
            values[key] = str(values[key])
    return Settings(**values)


def _results_context(run_dir: Path) -> dict[str, Any] | None:
    report = load_report(run_dir)
    if report is None:
        return None
    timings = report.get("timings", {})
    rows = []
    for c in report["cycles"]:
        losses = c.get("train_losses") or []
        rows.append({"cycle": c, "train_seconds": timings.get(f"cycle{c['cycle']}.finetune"),
                     "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None})
    threshold = float(report["metric"]["success_threshold"])
    from kd.pipeline.report import fmt_ci, fmt_gain

    return {"report": report, "rows": rows, "fmt": charts.fmt, "fmt_ci": fmt_ci, "fmt_gain": fmt_gain,
            "curve": report.get("learning_curve") or [],
            "relevancy_svg": charts.relevancy_chart(report["cycles"], threshold),
            "loss_svg": charts.loss_chart(report["cycles"]), "total_seconds": sum(timings.values())}


def create_app(output_dir: str | Path = "outputs", allowed_hosts: list[str] | None = None) -> FastAPI:
    """The app for runs under ``output_dir``; ``allowed_hosts`` (e.g. ["127.0.0.1", "localhost"]) refuses requests
    for other Host names (DNS rebinding)."""
    output = Path(output_dir).resolve()
    runner = PipelineRunner(output)
    defaults = form_defaults()
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        runner.shutdown()

    app = FastAPI(title="kd pipeline", lifespan=lifespan)
    app.state.runner = runner
    app.state.output_dir = output
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.middleware("http")
    async def json_posts_only(request: Request, call_next):
        """Another site's page cannot send ``application/json`` here without a CORS preflight (which this app
        never grants), so requiring it on every POST keeps such pages from starting or stopping runs."""
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0] != "application/json":
            return JSONResponse({"error": "POST requests must be application/json"}, status_code=415)
        return await call_next(request)

    def run_dir_of(name: str) -> Path:
        if not RUN_NAME.fullmatch(name) or not (output / name).is_dir():
            raise HTTPException(404, f"no run named {name!r} in {output}")
        return output / name

    def state() -> dict[str, Any]:
        watch = runner.active or runner.last
        return {"active": runner.active, "output_dir": str(output),
                "watch": run_state(output / watch, runner.active == watch) if watch else None,
                "runs": list_runs(output, runner.active)}

    def refused(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        return templates.TemplateResponse(request, "index.html", {
            "defaults": settings_dict(defaults.settings), "teachers": defaults.teachers, "students": defaults.students,
            "state": state(), "output_dir": str(output)})

    @app.get("/api/state")
    def api_state():
        return state()

    @app.get("/api/events")
    async def events(request: Request):
        """Server-sent events: the state (progress of the watched run, the runs list) whenever it changes."""
        async def stream():
            last, last_sent = None, 0.0
            while not await request.is_disconnected():
                payload = json.dumps(await asyncio.to_thread(state))
                if payload != last:
                    last, last_sent = payload, time.monotonic()
                    yield f"data: {payload}\n\n"
                elif time.monotonic() - last_sent > 15:
                    last_sent = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(EVENT_INTERVAL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/api/start")
    async def start(request: Request):
        if runner.is_running():  # refuse at once, before any checking
            return refused(409, f"A pipeline is already running ({runner.active}). Only one runs at a time: wait for "
                                "it to finish, or stop it, then start again.")
        try:
            body = await request.json()
        except ValueError:
            return refused(400, "The request must be a JSON object of settings.")
        try:
            s = _settings_from(body)
            name = s.run_name.strip() or time.strftime("run-%Y%m%d-%H%M%S")
            if not RUN_NAME.fullmatch(name):
                raise SettingsError(f"Run name {name!r}: use letters, digits, '.', '-' and '_' (at most 80).")
            overrides = to_overrides(s, output / name)
            await asyncio.to_thread(check, overrides)
            runner.start(name, overrides, {"settings": settings_dict(s) | {"run_name": name}, "cycles": s.cycles})
        except SettingsError as exc:
            return refused(400, str(exc))
        except RunRefused as exc:
            return refused(409, str(exc))
        return {"run": name}

    @app.post("/api/runs/{name}/resume")
    def resume(name: str):
        run_dir_of(name)
        try:
            runner.resume(name)
        except RunRefused as exc:
            return refused(409, str(exc))
        return {"run": name}

    @app.post("/api/stop")
    def stop():
        name = runner.stop()
        if name is None:
            return refused(409, "No pipeline is running.")
        return {"run": name}

    @app.get("/runs/{name}", response_class=HTMLResponse)
    def results_page(request: Request, name: str):
        run_dir = run_dir_of(name)
        return templates.TemplateResponse(request, "run.html", {
            "name": name, "results": _results_context(run_dir), "state": run_state(run_dir, runner.active == name)})

    @app.get("/runs/{name}/results", response_class=HTMLResponse)
    def results_fragment(request: Request, name: str):
        run_dir = run_dir_of(name)
        return templates.TemplateResponse(request, "results.html", {"name": name,
                                                                    "results": _results_context(run_dir)})

    return app
