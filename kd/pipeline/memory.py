"""Memory at each stage (process RSS, CUDA allocated/free) and freeing between stages."""

from __future__ import annotations

import gc
import logging
import resource

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def gpu_free_gb() -> float:
    """Free memory on the current CUDA device in GiB; 0 without CUDA."""
    try:
        import torch

        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            return free / 2**30
    except Exception:  # noqa: BLE001 - a broken driver means "no GPU" here
        pass
    return 0.0


def snapshot(stage: str) -> dict:
    """Memory now, logged and returned for the report."""
    snap = {"stage": stage, "rss_mb": _rss_mb()}
    try:
        import torch

        if torch.cuda.is_available():
            snap["cuda_allocated_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
            snap["cuda_free_mb"] = round(gpu_free_gb() * 1024, 1)
    except ImportError:  # pragma: no cover
        pass
    log.info("memory [%s]: %s", stage, ", ".join(f"{k}={v}" for k, v in snap.items() if k != "stage"))
    return snap


def free_memory() -> None:
    """Collect garbage and give cached CUDA blocks back (call after ``del model``)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
