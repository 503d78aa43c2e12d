"""Helpers shared by the benchmark scripts (run as `python benchmarks/bench_*.py`)."""

from __future__ import annotations

import threading
from typing import Self

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in benchmarks/requirements.txt
    psutil = None


class PeakRSS:
    """Peak growth of this process' resident set while the block runs (polled every 5 ms)."""

    def __enter__(self) -> Self:
        self._proc = psutil.Process() if psutil else None
        self.base = self._proc.memory_info().rss if self._proc else 0
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while self._proc is not None and not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20
