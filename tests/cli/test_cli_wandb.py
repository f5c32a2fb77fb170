"""kd-train with logger=wandb, a W&B key and no reachable server: finishes offline, never hangs on W&B."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.test_cli_train import tiny_overrides


def test_kd_train_with_a_key_and_an_unreachable_wandb_server_runs_offline_within_two_minutes(
        tiny_model_dir, tiny_beir_dir, tmp_path):
    out = tmp_path / "run"
    overrides = [o for o in tiny_overrides(tiny_model_dir, tiny_beir_dir, out, tmp_path / "cache")
                 if not o.startswith(("paths.output_dir", "logger="))]
    overrides += ["logger=wandb", f"hydra.run.dir={out}", "trainer.max_epochs=1", "eval_before=false"]
    key = "kdtestdummykey" + "0" * 26  # 40 characters, like a real W&B key; no server will ever see it
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and not k.lower().endswith("_proxy")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_API_KEY=key, WANDB_SILENT="true",
                   WANDB_BASE_URL=f"http://127.0.0.1:{closed.getsockname()[1]}")
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "kd.cli.train", *overrides], capture_output=True, text=True,
                              env=env, timeout=300)
        seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert seconds < 120, f"kd-train took {seconds:.0f} s"
    warnings = [line for line in output.splitlines() if "logging this run offline instead" in line]
    assert len(warnings) == 1, output[-3000:]
    command = re.search(r"wandb sync (\S+)", warnings[0]).group(1)
    run_id = (out / "wandb_run_id").read_text().strip()
    synced = list(Path(command).parent.glob(Path(command).name))
    assert [p.name.rsplit("-", 1)[1] for p in synced] == [run_id]  # the command names this run's offline folder
    assert synced[0].parent == out / "wandb" and synced[0].name.startswith("offline-run-")
    assert not list((out / "wandb").glob("run-*"))  # no online run was attempted
    assert key not in output
    for path in out.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), f"the W&B key was written to {path}"
