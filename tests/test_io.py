import pytest

from kd.io import atomic_dir, atomic_write_text


def test_atomic_dir_replaces_whole_or_leaves_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    assert (target / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("killed mid-write")
    assert (target / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left behind
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_atomic_write_text_leaves_no_temp_file(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "hello")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


WRITER = r"""
import sys
from pathlib import Path
from kd.io import atomic_dir, atomic_write_json
target, kind = Path(sys.argv[1]), sys.argv[2]
version = 0
while True:
    version += 1
    if kind == "file":
        atomic_write_json(target, {"version": version, "payload": [version] * 20000})
    else:
        with atomic_dir(target) as tmp:
            for i in range(20):
                (tmp / f"part{i}.txt").write_text(str(version) * 2000)
"""


def _kill_repeatedly(target, kind, kills, check):
    """Start a process that rewrites ``target`` forever, SIGKILL it at a random moment, check, repeat."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    rng = random.Random(0)
    outcomes = {"old or new": 0, "absent": 0}
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), kind], env=dict(os.environ))
        time.sleep(0.4 + rng.random() * 0.3)  # past start-up, into the write loop
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcomes[check(target)] += 1
    return outcomes


def test_sigkill_at_random_moments_never_leaves_a_torn_json_file(tmp_path):
    import json

    def check(path):
        if not path.exists():
            return "absent"  # killed before its first write finished
        data = json.loads(path.read_text())  # raises on a torn file
        assert data["payload"] == [data["version"]] * 20000
        return "old or new"

    outcomes = _kill_repeatedly(tmp_path / "state.json", "file", kills=12, check=check)
    assert outcomes["old or new"] >= 10


def test_sigkill_at_random_moments_never_leaves_a_half_written_folder(tmp_path):
    def check(path):
        if not path.exists():
            return "absent"  # killed between moving the old folder aside and renaming the new one in
        parts = sorted(path.iterdir())
        assert len(parts) == 20 and len({p.read_text() for p in parts}) == 1
        return "old or new"

    outcomes = _kill_repeatedly(tmp_path / "model", "dir", kills=12, check=check)
    assert outcomes["old or new"] >= 10
