"""Metrics the agent observes in user space: per-connection durations (with exemplars) and its
own pipeline counters. Kernel-counted metrics are in kernel_metrics.py."""

from __future__ import annotations

import threading
from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Histogram

from agent.enrich import Enricher

# From 100 µs (loopback round trips) to 5 min (long-lived batch and replication connections).
DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)


class Instruments:
    """prometheus_client instruments registered on the registry the agent was given."""

    def __init__(self, registry: CollectorRegistry, enricher: Enricher) -> None:
        self.duration = Histogram(
            "bcgov_tcp_connection_duration_seconds",
            "Duration of finished TCP connections, from SYN to close; exemplars carry the span's trace_id.",
            ["direction", "outcome", *enricher.label_names],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.spans_dropped = Counter(
            "bcgov_agent_spans_dropped", "Spans not exported, by reason (queue_full, export_failed).", ["reason"], registry=registry
        )
        self.spans_sampled_out = Counter(
            "bcgov_agent_spans_sampled_out", "Normal, fast connections whose span was sampled out (metrics still count them).", registry=registry
        )
        self.spans_exported = Counter("bcgov_agent_spans_exported", "Spans handed to the exporter successfully.", registry=registry)
        self.handler_errors = Counter(
            "bcgov_agent_handler_errors", "Records that failed to decode or process (logged, then skipped).", ["probe"], registry=registry
        )
        # Received-record counts are plain ints bumped on the hot path and exported by the
        # kernel collector next to the kernel's own lost counts.
        self._received: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        for reason in ("queue_full", "export_failed"):
            self.spans_dropped.labels(reason)

    def received(self, probe: str, n: int = 1) -> None:
        """Count records taken off a probe's ring buffer."""
        with self._lock:
            self._received[probe] += n

    def received_count(self, probe: str) -> int:
        """Records received so far from `probe`."""
        return self._received.get(probe, 0)
