"""Kernel monotonic time (bpf_ktime_get_ns) to wall-clock time.

BPF stamps events with CLOCK_MONOTONIC. The offset to CLOCK_REALTIME is sampled with the
realtime read bracketed by two monotonic reads and the tightest bracket kept, and re-sampled
periodically because NTP slews the realtime clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class MonotonicToWall:
    """Converts monotonic nanoseconds to Unix epoch nanoseconds."""

    def __init__(
        self,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        realtime_ns: Callable[[], int] = time.time_ns,
        resample_every_ns: int = 10_000_000_000,
        samples: int = 5,
    ) -> None:
        self._mono = monotonic_ns
        self._real = realtime_ns
        self._every = resample_every_ns
        self._samples = samples
        self._lock = threading.Lock()
        self._offset = 0
        self._sampled_at = -resample_every_ns
        self.resample()

    def resample(self) -> int:
        """Measure the realtime - monotonic offset again; returns it."""
        best_width, best_offset = None, 0
        for _ in range(self._samples):
            before = self._mono()
            real = self._real()
            after = self._mono()
            width = after - before
            if best_width is None or width < best_width:
                best_width, best_offset = width, real - (before + width // 2)
        with self._lock:
            self._offset = best_offset
            self._sampled_at = self._mono()
        return best_offset

    def to_wall_ns(self, mono_ns: int) -> int:
        """Epoch nanoseconds for a monotonic timestamp."""
        if self._mono() - self._sampled_at > self._every:
            self.resample()
        return mono_ns + self._offset
