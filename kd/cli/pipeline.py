"""``kd-pipeline``: the iterative LLM distillation pipeline (Hydra entry point, config ``conf/pipeline.yaml``).

    kd-pipeline cycles=2 questions_per_cycle=3 topics=[pods,services,storage]
    kd-pipeline run_dir=outputs/x resume=true   # continues with the run's saved config (manifest.json)
    kd-pipeline ui                 # the "Start pipeline" page (kd-ui)
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")

log = logging.getLogger("kd.pipeline")


def run(cfg: DictConfig, explicit_keys: list[str] | None = None) -> int:
    """Run the pipeline; ``explicit_keys`` (the command line's keys) let ``resume=true`` take the rest from the run."""
    from kd.errors import ConfigError, DataFormatError
    from kd.pipeline.orchestrate import run_pipeline
    from kd.pipeline.report import heldout_table, summary_table, timing_table
    from kd.pipeline.rundir import ConfigMismatchError
    from kd.pipeline.teacher import TeacherError

    start = time.perf_counter()
    try:
        result = run_pipeline(cfg, explicit_keys=explicit_keys)
    except (ConfigError, ConfigMismatchError, TeacherError, DataFormatError) as exc:
        print(f"kd-pipeline: error: {exc}", file=sys.stderr)
        return 2
    report = result["report"]
    print()
    if report.get("learning_curve"):
        print("Held-out questions (never trained on), mean [95% CI]; gains paired vs cycle 0:")
        print(heldout_table(report))
        print()
        print("Training questions, re-scored right after training on them (memorisation check):")
    print(summary_table(report))
    print()
    print(timing_table(report))
    print(f"\nsteps run: {len(result['executed'])}, loaded from earlier run: {len(result['skipped'])}; "
          f"wall time {time.perf_counter() - start:.1f} s")
    print(f"report: {Path(result['run_dir']) / 'report.md'}")
    return 0


@hydra.main(config_path=CONF_DIR, config_name="pipeline", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from kd.config import command_line_keys

    logging.getLogger("kd").setLevel(logging.INFO)
    code = run(cfg, command_line_keys())
    if code:
        sys.exit(code)


def main() -> None:
    if sys.argv[1:2] == ["ui"]:  # kd-pipeline ui [--host ...]: the same as kd-ui
        from kd.cli.ui import main as ui_main

        ui_main(sys.argv[2:])
        return
    _hydra_main()


if __name__ == "__main__":
    main()
