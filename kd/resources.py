"""Peak memory and throughput of a stage, measured while it runs."""

from __future__ import annotations

import os
import threading
import time

import torch


class PeakMemory:
    """Context manager sampling this process's resident memory (RSS) every ``interval`` seconds.

    ``peak_rss_mb``: the highest RSS seen (MiB), ``peak_cuda_mb``: ``torch.cuda.max_memory_allocated`` (MiB,
    0 without CUDA). Per stage, unlike ``ru_maxrss`` which only grows over the process's life (several sweep
    jobs share one process with Hydra's basic launcher).
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.peak_cuda_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        process = self._process
        while not self._stop.is_set():
            self.peak_rss_mb = max(self.peak_rss_mb, process.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        import psutil  # imported here, not in the thread, so that a missing package is an error, not a 0

        self._process = psutil.Process(os.getpid())
        self.peak_rss_mb = self._process.memory_info().rss / 2**20
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if torch.cuda.is_available():
            self.peak_cuda_mb = torch.cuda.max_memory_allocated() / 2**20


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
