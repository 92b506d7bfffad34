"""The agent-side cardinality guard: a budget of label sets per metric family, the rest folded.

Every metric family the agent exports may hold at most `budget(family)` label sets. Label sets
are admitted first come, first served, and stay admitted until released (the series of an
expired pod, see agent/metrics/series_expiry.py). A label set that arrives when the budget is spent is
*folded*: its values are added to the family's one overflow series, whose every label value is
``__overflow__`` (OpenTelemetry's ``otel.metric.overflow`` idea). So a family never exports more
than budget + 1 series, whatever the node runs.

``bcgov_agent_series_overflow_total{metric}`` counts the distinct label sets folded into a
family's overflow series. Distinctness is remembered in a bounded LRU (`folded_memory` label sets
per family): a folded label set that falls out of it and comes back is counted again, so past
that many distinct folded label sets the count can only over-state, never hide, the overflow.

The guard works in two places with the same admission state:
- at the source (`admit`), where state would grow: the kernel collector's cumulative counters
  and the prometheus_client instruments, so their memory is bounded too;
- at exposition (`guard_families` / `GuardedView`), over everything in the registry, so a
  collector that does not call `admit` (or a future one) is capped all the same.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

OVERFLOW = "__overflow__"
DEFAULT_BUDGET = 2000
DEFAULT_FOLDED_MEMORY = 4096
OVERFLOW_METRIC = "bcgov_agent_series_overflow"
# Labels that belong to a sample, not to the series' identity: a histogram's buckets are one series.
_SAMPLE_LABELS = frozenset({"le", "quantile"})
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

LabelValues = tuple[str, ...]
Released = dict[str, list[LabelValues]]


def family_name(metric: str) -> str:
    """The family name a budget applies to: a counter's `_total` suffix is optional in config."""
    return metric[: -len("_total")] if metric.endswith("_total") else metric


def budget_errors(default: object, budgets: object) -> list[str]:
    """Problems with budget settings, each naming the fix; empty when they are valid."""
    errors = []
    if isinstance(default, bool) or not isinstance(default, int) or default < 1:
        errors.append(f"series_budget_default must be an integer >= 1 (e.g. {DEFAULT_BUDGET}), not {default!r}")
    if not isinstance(budgets, Mapping):
        return errors + [f"series_budgets must be a mapping of metric name to budget, not {type(budgets).__name__}"]
    for name, n in budgets.items():
        if not isinstance(name, str) or not _NAME.match(name):
            errors.append(f"series_budgets: {name!r} is not a Prometheus metric name (e.g. bcgov_tcp_resets_total)")
        elif isinstance(n, bool) or not isinstance(n, int) or n < 1:
            errors.append(f"series_budgets.{name} must be an integer >= 1, not {n!r}")
    return errors


def is_overflow(values: LabelValues) -> bool:
    """True for the overflow series' label values."""
    return bool(values) and all(v == OVERFLOW for v in values)


class SeriesGuard(Collector):
    """Admission state for every family; also a Collector of its own overflow counter."""

    def __init__(
        self,
        default_budget: int = DEFAULT_BUDGET,
        budgets: Mapping[str, int] | None = None,
        folded_memory: int = DEFAULT_FOLDED_MEMORY,
    ) -> None:
        problems = budget_errors(default_budget, budgets or {})
        if problems:
            raise ValueError(problems[0])
        self._default = default_budget
        self._budgets = {family_name(k): v for k, v in (budgets or {}).items()}
        self._folded_memory = folded_memory
        self._lock = threading.Lock()
        self._names: dict[str, tuple[str, ...]] = {}
        self._admitted: dict[str, set[LabelValues]] = collections.defaultdict(set)
        self._folded: dict[str, collections.OrderedDict[LabelValues, None]] = collections.defaultdict(collections.OrderedDict)
        self._overflow: dict[str, int] = collections.defaultdict(int)

    def budget(self, metric: str) -> int:
        """Label sets `metric` may export besides its overflow series."""
        return self._budgets.get(family_name(metric), self._default)

    def admit(self, metric: str, names: Iterable[str], values: LabelValues) -> LabelValues:
        """`values` when admitted (now or before), else the overflow series' label values."""
        family = family_name(metric)
        values = tuple(values)
        with self._lock:
            admitted = self._admitted[family]
            if values in admitted or is_overflow(values):
                return values
            if family not in self._names:
                self._names[family] = tuple(names)
            if len(admitted) < self.budget(family):
                admitted.add(values)
                return values
            self._fold_locked(family, values)
            return (OVERFLOW,) * len(values)

    def _fold_locked(self, family: str, values: LabelValues) -> None:
        seen = self._folded[family]
        if values in seen:
            seen.move_to_end(values)
            return
        self._overflow[family] += 1
        seen[values] = None
        if len(seen) > self._folded_memory:
            seen.popitem(last=False)

    def release_matching(self, match: Callable[[Mapping[str, str]], bool]) -> Released:
        """Un-admit every label set for which `match(labels)` holds; return them by family so
        their holders can drop the series. Their slots go to the next new label sets."""
        out: Released = {}
        with self._lock:
            for family, admitted in self._admitted.items():
                names = self._names.get(family, ())
                gone = [v for v in admitted if match(dict(zip(names, v, strict=True)))]
                for v in gone:
                    admitted.discard(v)
                    self._folded[family].pop(v, None)
                if gone:
                    out[family] = gone
        return out

    def admitted(self, metric: str) -> int:
        """How many label sets of `metric` are admitted."""
        with self._lock:
            return len(self._admitted.get(family_name(metric), ()))

    def overflow_count(self, metric: str) -> int:
        """Distinct label sets of `metric` folded so far (see the module docstring)."""
        with self._lock:
            return self._overflow.get(family_name(metric), 0)

    def collect(self) -> Iterable[Metric]:
        fam = CounterMetricFamily(
            OVERFLOW_METRIC,
            "Distinct label sets folded into a metric's __overflow__ series because its series budget was spent.",
            labels=["metric"],
        )
        with self._lock:
            counts = sorted(self._overflow.items())
        for family, n in counts:
            fam.add_metric([family], float(n))
        yield fam

    # -- exposition ----------------------------------------------------------------------------
    def guard_families(self, families: Iterable[Metric]) -> Iterator[Metric]:
        """The families with label sets past their budget folded into one overflow series."""
        for fam in families:
            yield self._guard_family(fam)

    def _guard_family(self, fam: Metric) -> Metric:
        kept: list[Sample] = []
        to_fold: list[Sample] = []
        folded_new = False
        decided: dict[LabelValues, bool] = {}  # a histogram's buckets share one decision
        for s in fam.samples:
            names = tuple(k for k in s.labels if k not in _SAMPLE_LABELS)
            values = tuple(s.labels[k] for k in names)
            if is_overflow(values):  # folded at the source already: sums with the rest
                to_fold.append(s)
                continue
            if values not in decided:
                decided[values] = self.admit(fam.name, names, values) == values
            if decided[values]:
                kept.append(s)
            else:
                to_fold.append(s)
                folded_new = True
        if not folded_new:
            return fam
        out = Metric(fam.name, fam.documentation, fam.type, fam.unit)
        out.samples = kept + _summed(to_fold)
        return out


def _summed(samples: list[Sample]) -> list[Sample]:
    """Samples of many series as one overflow series: summed per sample name and bucket.

    Counters and histogram buckets sum exactly; a gauge's overflow value is the sum of the folded
    gauges (no better single value exists). `_created` keeps the earliest time. Exemplars and
    timestamps of folded samples are dropped: they would name one of many series.
    """
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for s in samples:
        key = (s.name, tuple((k, v if k in _SAMPLE_LABELS else OVERFLOW) for k, v in s.labels.items()))
        if key not in sums:
            sums[key] = s.value
        elif s.name.endswith("_created"):
            sums[key] = min(sums[key], s.value)
        else:
            sums[key] += s.value
    return [Sample(name, dict(labels), value) for (name, labels), value in sums.items()]


class GuardedView(Collector):
    """What /metrics exposes: the registry's families through the guard, after housekeeping
    (e.g. expiring the series of deleted pods) has run."""

    def __init__(self, registry: Collector, guard: SeriesGuard, housekeeping: Iterable[Callable[[], object]] = ()) -> None:
        self._registry = registry
        self._guard = guard
        self._housekeeping = list(housekeeping)

    def collect(self) -> Iterator[Metric]:
        for task in self._housekeeping:
            task()
        yield from self._guard.guard_families(self._registry.collect())
