"""The inventory model: metric -> series (label sets) -> label -> values.

Series are stored as sorted tuples of (label, value) pairs without `__name__`, so every count the
governor reports (series per metric, distinct values per label, series left after dropping a label)
is computed exactly from the series set, never estimated.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Iterable, Mapping

LabelSet = tuple[tuple[str, str], ...]


def label_set(labels: Mapping[str, str]) -> LabelSet:
    """A canonical, hashable label set from a mapping; `__name__` is left out, empty values too
    (Prometheus treats an empty label as an absent one)."""
    # No interning: a JSON answer or an exposition shares one key object per label name already.
    return tuple(sorted(kv for kv in labels.items() if kv[0] != "__name__" and kv[1] != ""))


@dataclasses.dataclass
class MetricInventory:
    """One metric's series. `count` equals `len(series)` unless the series set was not fetched
    (`truncated`: the metric exceeded a bound), in which case only the count is known."""

    name: str
    series: frozenset[LabelSet]
    count: int
    type: str | None = None
    truncated: bool = False
    # The histogram/summary family this metric's samples belong to (`foo` for `foo_bucket`), else
    # None: such families are analysed and remedied as one unit.
    family: str | None = None
    # Where the count came from when it was not enumerated (a backend's cardinality statistics,
    # e.g. "VictoriaMetrics /api/v1/status/tsdb (date 2026-11-29, ...)"): the count is an estimate
    # and there is no series set (`truncated` is True too, so nothing analyses it). None: exact.
    estimated_from: str | None = None
    # Set when the count is exact but the series were not fetched (a PromQL `count by (__name__)`
    # at the evaluation time: the same live series enumeration would see); `truncated` is True too.
    counted_by: str | None = None
    # Computed once on first use (the series set never changes); not part of equality or repr.
    _value_counts: dict[str, collections.Counter[str]] | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, name: str, series: Iterable[LabelSet], type: str | None = None, family: str | None = None) -> MetricInventory:
        s = frozenset(series)
        return cls(name=name, series=s, count=len(s), type=type, family=family)

    def label_names(self) -> list[str]:
        """Every label name that occurs on at least one series, sorted."""
        return sorted(self.all_value_counts())

    def all_value_counts(self) -> dict[str, collections.Counter[str]]:
        """label -> series per value, for every label, in one pass over the series (cached: do
        not modify the answer)."""
        if self._value_counts is None:
            # Counting (label, value) pairs in C, then splitting by label, is ~10x a Python loop.
            out: dict[str, collections.Counter[str]] = {}
            for (k, v), n in collections.Counter(itertools.chain.from_iterable(self.series)).items():
                c = out.get(k)
                if c is None:
                    c = out[k] = collections.Counter()
                c[v] = n
            self._value_counts = out
        return self._value_counts

    def value_counts(self, label: str) -> collections.Counter[str]:
        """Series per value of `label` (series without the label are not counted)."""
        return collections.Counter(self.all_value_counts().get(label, {}))

    def distinct_values(self, label: str) -> int:
        return len(self.all_value_counts().get(label, ()))

    def series_without(self, labels: Iterable[str]) -> int:
        """Exact number of distinct series left if `labels` were removed from every series."""
        drop = frozenset(labels) & self.all_value_counts().keys()
        if not drop:
            return len(self.series)
        if len(drop) == 1:
            (label,) = drop
            return len({_without_one(s, label) for s in self.series})
        return len({tuple(p for p in s if p[0] not in drop) for s in self.series})

    def savings(self, labels: Iterable[str]) -> int:
        """Series saved by removing `labels`: current count minus distinct series after removal."""
        return self.count - self.series_without(labels)

    def subset(self, series: Iterable[LabelSet]) -> MetricInventory:
        """The same metric restricted to `series` (used to split a metric across tiers)."""
        return MetricInventory.of(self.name, series, self.type, self.family)


def _without_one(s: LabelSet, label: str) -> LabelSet:
    """`s` minus the pair of `label` (label sets are short: a scan beats building a dict)."""
    for i, (k, _) in enumerate(s):
        if k == label:
            return s[:i] + s[i + 1:]
    return s


@dataclasses.dataclass
class Phases:
    """How an inventory was collected: phase 1 asks the backend's cardinality statistics
    (`statistics`: the request, `meaning`: what its counts mean; None when there were none),
    phase 2 enumerates series exactly. Durations in seconds; `note` says why a phase was skipped."""

    backend: str | None
    statistics: str | None
    meaning: str | None
    statistics_seconds: float
    enumeration_seconds: float
    enumerated_metrics: int
    enumerated_series: int
    estimated_metrics: int
    estimated_series: int
    note: str | None = None
    counted_metrics: int = 0  # exact counts without their series (PromQL count by (__name__))
    counted_series: int = 0


@dataclasses.dataclass
class Inventory:
    """Everything one collection saw. `head` carries the TSDB head stats when the source has them;
    `warnings` are things a person should know that do not stop the report (an empty target)."""

    metrics: dict[str, MetricInventory]
    source: str
    collected_at: float
    head: dict[str, float] | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    phases: Phases | None = None  # how a Prometheus API inventory was collected

    @property
    def total_series(self) -> int:
        return sum(m.count for m in self.metrics.values())

    @property
    def truncated_metrics(self) -> list[str]:
        """Metrics enumerated but too big to analyse (estimated ones are not listed here)."""
        return sorted(n for n, m in self.metrics.items() if m.truncated and m.estimated_from is None and m.counted_by is None)

    @property
    def estimated_metrics(self) -> list[str]:
        """Metrics whose count is a backend's estimate (not enumerated)."""
        return sorted(n for n, m in self.metrics.items() if m.estimated_from is not None)

    def merged(self, other: Inventory) -> Inventory:
        """Union of two inventories (several scrape targets): series sets of a metric are united."""
        metrics = dict(self.metrics)
        for name, m in other.metrics.items():
            if name in metrics:
                old = metrics[name]
                if old.truncated or m.truncated:
                    metrics[name] = MetricInventory(name, frozenset(), old.count + m.count, old.type or m.type, True, old.family or m.family)
                else:
                    metrics[name] = MetricInventory.of(name, old.series | m.series, old.type or m.type, old.family or m.family)
            else:
                metrics[name] = m
        return Inventory(metrics, f"{self.source}, {other.source}", max(self.collected_at, other.collected_at), self.head,
                         self.warnings + other.warnings)
