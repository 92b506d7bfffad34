"""Exemplars for the in-kernel connection-duration histogram.

The kernel counts every connection's duration (tcp_lifecycle's `tcp_connection_durations` map);
user space only sees the records that reach it, and keeps a span for some of them. For each kept
span the pipeline remembers its trace_id/span_id and duration under the histogram's label set and
the kernel's slot for that duration; the next scrape attaches the latest one per bucket to the
exported histogram (agent/metrics/latency.py). Between scrapes at most `max_pending` are held.
"""

from __future__ import annotations

import threading
import time

from prometheus_client.samples import Exemplar

from agent.metrics.series_guard import LabelValues
from probes.tcp_lifecycle import DURATION_SLOTS

DEFAULT_MAX_PENDING = 16384


class DurationExemplars:
    """The latest kept span per (label set, slot) since the last scrape."""

    def __init__(self, slot_count: int = DURATION_SLOTS, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._last_slot = slot_count - 1
        self._max = max_pending
        self._lock = threading.Lock()
        self._pending: dict[tuple[LabelValues, int], tuple[str, str, int, float]] = {}

    def remember(self, labels: LabelValues, duration_ns: int, trace_id: str, span_id: str) -> None:
        """Note a kept span of a connection that lasted `duration_ns` (the kernel's own delta)."""
        # bcgov_hist_slot: the bit length of whole microseconds, the last slot catching the rest
        slot = min((duration_ns // 1000).bit_length(), self._last_slot)
        key = (labels, slot)
        # A plain tuple per record; the Exemplar (a dict and a namedtuple) is built only for the
        # one per bucket that a scrape hands over (take), not for every kept span.
        noted = (trace_id, span_id, duration_ns, time.time())
        with self._lock:
            # A full table keeps what it has: more label sets between two scrapes than the series
            # budgets admit would be folded anyway.
            if key in self._pending or len(self._pending) < self._max:
                self._pending[key] = noted

    def take(self) -> list[tuple[LabelValues, int, Exemplar]]:
        """Hand over (and forget) what was remembered since the last call."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [(labels, slot, Exemplar({"trace_id": t, "span_id": s}, d / 1e9, ts))
                for (labels, slot), (t, s, d, ts) in pending.items()]

    def __len__(self) -> int:
        return len(self._pending)
