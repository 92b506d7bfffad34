"""Cumulative state of the drained families (the state half of agent/metrics/collectors.py):
counters and log2 histograms.

A drained map hands over only what changed since the last scrape; Prometheus needs totals that
only grow. Counters sum the drained counts per label set (`CounterState`); histograms add the
kernel's log2 slots and exact sums (`HistogramState`, probes/bcgov_hist.h, declared as a
`HistogramFamily`). With a `SeriesGuard`, label sets are admitted at the source, so the state
holds at most budget + 1 label sets per family, and `forget` drops those of expired pods
(agent/metrics/series_expiry.py). A histogram declared with exemplars carries the latest kept
span's trace_id/span_id per bucket (agent/metrics/exemplars.py).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from agent.metrics.series_guard import LabelValues, SeriesGuard
from probes.latency_hist import HIST_SLOTS

#: The last kernel slot is the overflow: it only counts towards +Inf.
FINITE_SLOTS = HIST_SLOTS - 1

def slot_upper_bound_seconds(slot: int) -> float:
    """The `le` of a log2 slot: every latency in slot s is below 2^s microseconds."""
    return (1 << slot) / 1e6


@functools.cache
def bucket_bounds(slot_count: int) -> tuple[str, ...]:
    """The `le` labels of a histogram of `slot_count` log2 slots; the last slot is +Inf only."""
    return tuple(floatToGoString(slot_upper_bound_seconds(s)) for s in range(slot_count - 1)) + ("+Inf",)


BUCKET_BOUNDS: tuple[str, ...] = bucket_bounds(HIST_SLOTS)


def cumulative_buckets(
    slots: Sequence[int], slot_count: int = HIST_SLOTS, exemplars: Mapping[int, Exemplar] | None = None
) -> list[tuple[Any, ...]]:
    """Per-slot counts (slot_count of them) -> Prometheus cumulative (le, count) pairs ending at
    +Inf; a slot with an exemplar gives an (le, count, exemplar) triple."""
    if len(slots) != slot_count:
        raise ValueError(f"expected {slot_count} log2 slots, got {len(slots)}: BCGOV_HIST_SLOTS of the probe and "
                         "its HistogramFamily's slots (HIST_SLOTS by default, probes/latency_hist.py) disagree")
    bounds = bucket_bounds(slot_count)
    out: list[tuple[Any, ...]] = []
    running = 0
    for i, (le, n) in enumerate(zip(bounds, slots, strict=True)):
        running += n
        ex = exemplars.get(i) if exemplars else None
        out.append((le, float(running), ex) if ex is not None else (le, float(running)))
    return out


class HistogramState:
    """Cumulative log2 histograms per label set of one family, fed by drained kernel deltas."""

    def __init__(
        self, name: str, documentation: str, label_names: Sequence[str], guard: SeriesGuard | None = None,
        slot_count: int = HIST_SLOTS,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self._guard = guard
        self.slot_count = slot_count
        self.slots: dict[LabelValues, list[int]] = {}
        self.sum_ns: dict[LabelValues, int] = {}
        # Latest exemplar per slot, only for label sets held here (admitted or the overflow
        # series), so at most (budget + 1) * slot_count of them.
        self.exemplars: dict[LabelValues, dict[int, Exemplar]] = {}

    def add(self, labels: LabelValues, slots: Sequence[int], sum_ns: int) -> None:
        """Add one drained delta (per-slot counts and their sum in nanoseconds)."""
        if self._guard is not None:
            labels = self._guard.admit(self.name, self.label_names, labels)
        acc = self.slots.setdefault(labels, [0] * self.slot_count)
        for i, n in enumerate(slots):
            acc[i] += int(n)
        self.sum_ns[labels] = self.sum_ns.get(labels, 0) + int(sum_ns)

    def attach_exemplar(self, labels: LabelValues, slot: int, exemplar: Exemplar) -> None:
        """Make `exemplar` the latest of `slot` of `labels`. Only label sets the drains admitted
        get one (the overflow series' exemplars would be dropped by the exposition's fold anyway),
        so exemplars never make series of their own."""
        if labels in self.slots and 0 <= slot < self.slot_count:
            self.exemplars.setdefault(labels, {})[slot] = exemplar

    def forget(self, label_sets: Iterable[LabelValues]) -> None:
        """Drop label sets (of expired pods) so they are no longer exported."""
        for values in label_sets:
            self.slots.pop(values, None)
            self.sum_ns.pop(values, None)
            self.exemplars.pop(values, None)

    def family(self) -> HistogramMetricFamily:
        """The state as one histogram family, `le` in seconds."""
        fam = HistogramMetricFamily(self.name, self.documentation, labels=list(self.label_names))
        for labels in sorted(self.slots):
            buckets = cumulative_buckets(self.slots[labels], self.slot_count, self.exemplars.get(labels))
            fam.add_metric(list(labels), buckets, self.sum_ns[labels] / 1e9)
        return fam


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
