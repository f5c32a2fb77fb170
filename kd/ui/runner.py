"""Runs the real pipeline (``python -m kd.cli.pipeline <overrides>``, i.e. ``kd-pipeline``) in a background
process, one at a time; its output goes to ``<run_dir>/ui.log`` and its end (exit code, error in plain words) to
``<run_dir>/ui_run.json``. A process keeps the server responsive while torch works, frees the models' memory when
the run ends, and can be stopped; the pipeline's step files make a stopped run resumable."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import kd
from kd.io import atomic_write_json
from kd.pipeline.rundir import MANIFEST
from kd.ui.runs import UI_LOG, UI_RUN, cycles_of, error_from_log, log_tail, read_json

KD_ROOT = str(Path(kd.__file__).resolve().parents[1])  # the kd the server runs is the kd the pipeline runs


class RunRefused(RuntimeError):
    """A start or resume that cannot be done now (another run is going, the run folder exists, ...)."""


class PipelineRunner:
    """One pipeline process at a time for runs under ``output_dir``."""

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir)
        self.active: str | None = None  # run now running
        self.last: str | None = None  # run started most recently (shown in the progress panel)
        self.command = [sys.executable, "-m", "kd.cli.pipeline"]  # + the run's Hydra overrides
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._lock = threading.Lock()

    def is_running(self) -> bool:
        with self._lock:
            return self.active is not None

    def start(self, name: str, overrides: list[str], info: dict, resume: bool = False) -> Path:
        """Start ``kd-pipeline <overrides>`` for run ``name``; ``RunRefused`` while another run is going."""
        with self._lock:
            if self.active is not None:
                raise RunRefused(f"A pipeline is already running ({self.active}). Only one runs at a time: wait "
                                 "for it to finish, or stop it, then start again.")
            run_dir = self.output_dir / name
            if not resume and run_dir.exists():
                raise RunRefused(f"A run named {name} already exists in {self.output_dir}; choose another name "
                                 "(or use Resume on that run).")
            run_dir.mkdir(parents=True, exist_ok=True)
            record = {**info, "overrides": overrides, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "started_unix": time.time(), "resumed": resume, "exit_code": None, "error": None,
                      "stopped": False}
            atomic_write_json(run_dir / UI_RUN, record)
            log = (run_dir / UI_LOG).open("ab")
            cmd = [*self.command, *overrides]
            log.write(f"$ kd-pipeline {' '.join(overrides)}\n".encode())
            log.flush()
            env = {**os.environ, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": os.pathsep.join(p for p in (KD_ROOT, os.environ.get("PYTHONPATH")) if p)}
            try:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            except OSError as exc:
                log.close()
                atomic_write_json(run_dir / UI_RUN, {**record, "error": f"could not start the pipeline: {exc}"})
                raise RunRefused(f"Could not start the pipeline: {exc}") from None
            self._proc, self.active, self.last, self._stopping = proc, name, name, False
        threading.Thread(target=self._watch, args=(proc, run_dir, record, log), daemon=True,
                         name=f"kd-ui-watch-{name}").start()
        return run_dir

    def resume(self, name: str) -> Path:
        """Start run ``name`` again (the pipeline loads its finished steps): with the overrides it was started with
        from this page, or, for a run started with ``kd-pipeline`` (a manifest, no overrides saved here), with just
        ``run_dir=<dir> resume=true`` (the pipeline then takes the run's own saved config from its manifest)."""
        run_dir = self.output_dir / name
        record = read_json(run_dir / UI_RUN) or {}
        if record.get("overrides"):
            # fault injection (debug.crash_after) would crash the resumed run again at the same step: dropped
            overrides = [o for o in record["overrides"] if not o.startswith(("resume=", "debug."))] + ["resume=true"]
        elif (run_dir / MANIFEST).is_file():
            overrides = [f"run_dir={run_dir}", "resume=true"]
        else:
            raise RunRefused(f"{name} has no manifest.json (the pipeline never started there), so there is nothing "
                             "to resume; start a new run instead.")
        info = {k: v for k, v in record.items() if k in ("settings", "cycles")}
        if "cycles" not in info and cycles_of(run_dir) is not None:
            info["cycles"] = cycles_of(run_dir)
        return self.start(name, overrides, info, resume=True)

    def stop(self) -> str | None:
        """Stop the running pipeline (SIGTERM); its finished steps stay on disk. Returns the run's name."""
        with self._lock:
            if self._proc is None or self.active is None:
                return None
            self._stopping = True
            self._proc.terminate()
            return self.active

    def _watch(self, proc: subprocess.Popen, run_dir: Path, record: dict, log) -> None:
        code = proc.wait()
        log.close()
        error = None
        if code != 0:
            error = "Stopped from the page." if self._stopping else error_from_log(log_tail(run_dir, 400), code)
        atomic_write_json(run_dir / UI_RUN, {**record, "exit_code": code, "error": error, "stopped": self._stopping,
                                             "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        with self._lock:
            if self._proc is proc:
                self._proc, self.active = None, None

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop a running pipeline when the server stops (it can be resumed later)."""
        proc = self._proc
        if proc is not None and self.stop():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
