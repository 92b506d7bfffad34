"""Metrics the agent observes in user space: per-connection durations (with exemplars) and its
own pipeline counters. Kernel-counted metrics are in kernel_metrics.py."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import defaultdict
from typing import Any, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.samples import Exemplar

from agent.enrich import Enricher
from agent.series_guard import LabelValues, SeriesGuard

DROP_REASONS = ("queue_full", "export_failed", "shutdown")
_CHILD_CACHE_MAX = 8192

# From 100 µs (loopback round trips) to 5 min (long-lived batch and replication connections).
DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)


def _fast_observe_supported() -> bool:
    h = Histogram("bcgov_probe_internals", "a throwaway: does this prometheus-client have the internals?", registry=None)
    return all(hasattr(h, a) for a in ("_sum", "_buckets", "_upper_bounds")) and hasattr(h._buckets[0], "set_exemplar")


_FAST_OBSERVE = _fast_observe_supported()


def observe_with_exemplar(child: Any, amount: float, trace_id: str, span_id: str) -> None:
    """`child.observe(amount, exemplar={"trace_id": ..., "span_id": ...})` without its per-call
    checks: the exemplar's label names are fixed and its 32 + 16 hex digits are far below the
    128-character limit, and a binary search replaces the linear walk over 21 buckets. Uses the
    histogram child's internals of the pinned prometheus-client (checked once at import; a version
    without them takes the public path). Same samples and exemplars as observe (tests hold them equal)."""
    if not _FAST_OBSERVE:
        child.observe(amount, exemplar={"trace_id": trace_id, "span_id": span_id})
        return
    child._sum.inc(amount)
    i = bisect_left(child._upper_bounds, amount)
    bucket = child._buckets[i]
    bucket.inc(1)
    bucket.set_exemplar(Exemplar({"trace_id": trace_id, "span_id": span_id}, amount, time.time()))


class GuardedLabels:
    """A labelled prometheus_client metric whose `labels()` goes through the series guard, so
    it never holds more than budget + 1 children."""

    def __init__(self, metric: Any, name: str, label_names: Iterable[str], guard: SeriesGuard) -> None:
        self._metric = metric
        self._name = name
        self._label_names = tuple(label_names)
        self._guard = guard
        # values -> child: admission and prometheus_client's labels() (locks, validation) cost
        # several microseconds per record; a label set's child stays the same until forget().
        self._children: dict[LabelValues, Any] = {}

    def labels(self, *values: str) -> Any:
        """The child for `values`, or the overflow child when the budget is spent."""
        child = self._children.get(values)
        if child is None:
            child = self._metric.labels(*self._guard.admit(self._name, self._label_names, values))
            if len(self._children) >= _CHILD_CACHE_MAX:
                self._children.clear()
            self._children[values] = child
        return child

    def forget(self, released: Mapping[str, Iterable[LabelValues]]) -> None:
        """Remove the children the guard released."""
        if released.get(self._name):
            # Released slots may go to label sets folded into overflow so far: decide afresh.
            self._children = {}
        for values in released.get(self._name, ()):
            try:
                self._metric.remove(*values)
            except KeyError:
                pass


class Instruments:
    """prometheus_client instruments registered on the registry the agent was given."""

    def __init__(self, registry: CollectorRegistry, enricher: Enricher, guard: SeriesGuard | None = None) -> None:
        guard = guard or SeriesGuard()
        duration_labels = ["direction", "outcome", *enricher.label_names]
        self.duration = GuardedLabels(
            Histogram(
                "bcgov_tcp_connection_duration_seconds",
                "Duration of finished TCP connections, from SYN to close; exemplars carry the span's trace_id.",
                duration_labels,
                buckets=DURATION_BUCKETS,
                registry=registry,
            ),
            "bcgov_tcp_connection_duration_seconds", duration_labels, guard,
        )
        self.spans_dropped = Counter(
            "bcgov_agent_spans_dropped", "Spans not exported, by reason: queue_full (the export queue was full), export_failed (the "
            "collector refused the batch or could not be reached within the timeout), shutdown (still queued when "
            "the agent stopped and the flush time was up).", ["reason"], registry=registry
        )
        self.spans_sampled_out = Counter(
            "bcgov_agent_spans_sampled_out", "Normal, fast connections whose span was sampled out (metrics still count them).", registry=registry
        )
        self.own_connections = Counter(
            "bcgov_agent_own_connections", "The agent's own TCP connections (OTLP export, API watches): counted, no span, "
            "log line or duration observation, so exporting spans does not make more spans.", registry=registry
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

    def forget(self, released: Mapping[str, Iterable[LabelValues]]) -> None:
        """Drop the series the guard released (their pods are gone)."""
        self.duration.forget(released)

    def received(self, probe: str, n: int = 1) -> None:
        """Count records taken off a probe's ring buffer."""
        with self._lock:
            self._received[probe] += n

    def received_count(self, probe: str) -> int:
        """Records received so far from `probe`."""
        return self._received.get(probe, 0)
