"""Cumulative counters fed by drained kernel deltas (the counter half of agent/metrics/collectors.py).

A drained map hands over only what changed since the last scrape; Prometheus needs totals that
only grow. The state admits label sets through the `SeriesGuard`, so it holds at most budget + 1
label sets per family, and `forget` drops the ones of expired pods (agent/metrics/series_expiry.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from prometheus_client.core import CounterMetricFamily

from agent.metrics.series_guard import LabelValues, SeriesGuard


class CounterState:
    """One counter family's totals per label set: those the guard admits plus its overflow series."""

    def __init__(self, name: str, documentation: str, labels: Iterable[str], guard: SeriesGuard) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self._guard = guard
        self.totals: dict[LabelValues, int] = defaultdict(int)

    def add_all(self, deltas: Mapping[LabelValues, int]) -> None:
        """Add one drain's deltas, already summed per label set."""
        for values, n in deltas.items():
            self.totals[self._guard.admit(self.name, self.labels, values)] += n

    def forget(self, label_sets: Iterable[LabelValues]) -> None:
        """Drop label sets (of expired pods) so they are no longer exported."""
        for values in label_sets:
            self.totals.pop(values, None)

    def family(self) -> CounterMetricFamily:
        """The totals as one counter family (`_total` added by the exposition)."""
        fam = CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for values, n in sorted(self.totals.items()):
            fam.add_metric(list(values), float(n))
        return fam


def summed(pairs: Iterable[tuple[LabelValues, int]]) -> dict[LabelValues, int]:
    """(label set, count) pairs -> count per label set (several map keys may share one label set)."""
    sums: dict[LabelValues, int] = defaultdict(int)
    for labels, n in pairs:
        sums[labels] += n
    return sums
