"""kd.allocator: glibc's mmap threshold is fixed on Linux unless the user set glibc's own variable."""

import subprocess
import sys

import pytest

from kd.allocator import fix_mmap_threshold


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_threshold_is_fixed_and_freed_blocks_leave_the_process():
    script = """
import gc, sys
from kd.allocator import fix_mmap_threshold
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) // 1024
if sys.argv[1] == 'fix':
    assert fix_mmap_threshold()
keep, drop = [], []
drop.append(bytearray(8 << 20)); drop.clear()   # frees an 8 MiB mmap block: glibc's dynamic threshold rises to it
for i in range(200):                            # 2 MiB blocks interleaved with small live ones: a fragmented heap
    drop.append(bytearray(2 << 20)); keep.append(bytearray(64))
base = rss(); drop.clear(); gc.collect()
print(base - rss())
"""
    freed = {mode: int(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                                      check=True).stdout) for mode in ("fix", "dynamic")}
    assert freed["fix"] >= 350  # the 400 MiB of 2 MiB blocks went back to the system
    assert freed["dynamic"] < freed["fix"]


def test_glibc_variable_in_the_environment_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold() is False
