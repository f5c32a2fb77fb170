"""Give freed tensor memory back to the operating system: glibc's mmap threshold fixed at 1 MiB.

On CPU, PyTorch allocates tensors with the C library's ``malloc``. glibc serves blocks below its *mmap threshold*
from heaps (arenas) that keep freed memory for reuse and rarely shrink, and blocks above it with ``mmap``, which
``free`` returns to the system at once. The threshold is dynamic: every freed mmap block raises it to that block's
size, up to 32 MiB. A transformer training step frees many tensors of a few to 32 MiB (at 256 tokens a MiniLM
hidden-state tensor of 64 texts is 25 MiB), so after the first step they all land in the arenas, which stay
fragmented at several GB between steps: measured on one checkpointed MiniLM step of 16 queries x 4 documents at
256 tokens, the peak RSS grew by 3126 MiB with the dynamic threshold and by 1419 MiB with it fixed at 1 MiB
(benchmarks/RESULTS.md §7). Numerics are untouched (only where the bytes live changes).

``MALLOC_MMAP_THRESHOLD_`` in the environment (glibc's own setting) wins: then nothing is changed here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
DEFAULT_THRESHOLD = 1 << 20


def fix_mmap_threshold(threshold_bytes: int = DEFAULT_THRESHOLD) -> bool:
    """Set glibc's mmap threshold to ``threshold_bytes`` (disabling its dynamic growth). Returns whether it was set:
    False off Linux/glibc or when ``MALLOC_MMAP_THRESHOLD_`` is already in the environment."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)))
    log.debug("glibc mmap threshold %s at %d bytes", "fixed" if done else "NOT set", threshold_bytes)
    return done
