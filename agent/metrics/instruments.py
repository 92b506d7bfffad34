"""Metrics the agent counts in user space: its own pipeline counters, and the exemplars (kept
spans' ids) for the connection-duration histogram the kernel keeps. Kernel-counted metrics are in
agent/metrics/collectors.py."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.identity.enricher import Enricher
from agent.metrics.exemplars import Exemplars
from agent.metrics.series_guard import SeriesGuard

DROP_REASONS = ("queue_full", "export_failed", "shutdown")


class SampledOut(Collector):
    """bcgov_agent_spans_sampled_out_total: connections sampled out by the kernel (no record sent)
    plus those sampled out here (records sent before a keep-ratio change reached the kernel)."""

    def __init__(self) -> None:
        self._user = 0
        #: The kernel's count (agent/kernel/sampling.py), set once tcp_lifecycle is loaded.
        self.kernel: Callable[[], int] | None = None

    def inc(self) -> None:
        """Count one span sampled out in user space (reader thread only)."""
        self._user += 1

    def collect(self) -> Iterable[Metric]:
        kernel = self.kernel() if self.kernel is not None else 0
        yield CounterMetricFamily(
            "bcgov_agent_spans_sampled_out",
            "Normal, fast connections whose span was sampled out (metrics still count them), in the kernel or the agent.",
            value=float(self._user + kernel),
        )


class Instruments:
    """prometheus_client instruments registered on the registry the agent was given."""

    def __init__(self, registry: CollectorRegistry, enricher: Enricher, guard: SeriesGuard | None = None) -> None:
        # Histograms with exemplars are counted in the kernel (agent/metrics/collectors.py); the
        # handlers only note the kept spans whose ids become their buckets' exemplars, each family
        # in its own store.
        self.exemplars = Exemplars()
        self.spans_dropped = Counter(
            "bcgov_agent_spans_dropped", "Spans not exported, by reason: queue_full (the export queue was full), export_failed (the "
            "collector refused the batch or could not be reached within the timeout), shutdown (still queued when "
            "the agent stopped and the flush time was up).", ["reason"], registry=registry
        )
        self.spans_sampled_out = SampledOut()
        registry.register(self.spans_sampled_out)
        self.own_connections = Counter(
            "bcgov_agent_own_connections", "The agent's own TCP connections (OTLP export, API watches): counted, no span "
            "or log line, so exporting spans does not make more spans (the kernel counts them in "
            "bcgov_tcp_connections_total and the duration histogram like any connection).", registry=registry
        )
        self.spans_exported = Counter("bcgov_agent_spans_exported", "Spans handed to the exporter successfully.", registry=registry)
        self.handler_errors = Counter(
            "bcgov_agent_handler_errors", "Records that failed to decode or process (logged, then skipped).", ["probe"], registry=registry
        )
        # Received-record counts are plain ints bumped on the hot path and exported by the
        # kernel collector next to the kernel's own lost counts.
        self._received: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        for reason in DROP_REASONS:
            self.spans_dropped.labels(reason)

    def received(self, probe: str, n: int = 1) -> None:
        """Count records taken off a probe's ring buffer."""
        with self._lock:
            self._received[probe] += n

    def received_count(self, probe: str) -> int:
        """Records received so far from `probe`."""
        return self._received.get(probe, 0)
