"""Which label to drop, and exactly what that saves, for one unit of remediation.

A unit is one metric, or every stored sample name of one histogram or summary family
(`foo_bucket`, `foo_count`, `foo_sum`, `foo_created`; a summary's quantile series `foo`): a fix
must apply to all of a family's series or it breaks the family, and the family's `le`/`quantile`
labels are its shape, never a label to drop. Savings are exact: counted from the series sets.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from governor.budgets import Budgets
from governor.exposition import SHAPE_LABELS
from governor.inventory import MetricInventory
from governor.usage import UsageIndex

SECONDS_PER_DAY = 86_400


@dataclasses.dataclass
class Unit:
    """One metric, or the sample names of one histogram/summary family (`grouped`)."""

    name: str
    members: list[MetricInventory]
    grouped: bool

    @property
    def count(self) -> int:
        return sum(m.count for m in self.members)

    @property
    def truncated(self) -> bool:
        return any(m.truncated for m in self.members)

    @property
    def metric_names(self) -> list[str]:
        return sorted(m.name for m in self.members)

    def label_names(self) -> list[str]:
        return sorted({lb for m in self.members for lb in m.label_names()})

    def savings(self, labels: Iterable[str]) -> int:
        labels = list(labels)
        return sum(m.savings(labels) for m in self.members)


def units_of(metrics: Iterable[MetricInventory]) -> list[Unit]:
    """Metrics grouped into units, biggest first (then by name)."""
    groups: dict[tuple[bool, str], list[MetricInventory]] = {}
    for m in metrics:
        key = (True, m.family) if m.family else (False, m.name)
        groups.setdefault(key, []).append(m)
    units = [Unit(name, members, grouped) for (grouped, name), members in groups.items()]
    return sorted(units, key=lambda u: (-u.count, u.name))


@dataclasses.dataclass
class Recommendation:
    tier: str
    metric: str           # the unit: a metric, or a histogram/summary family name
    label: str
    series_before: int
    series_after: int
    saved: int
    memory_bytes_saved: int
    disk_bytes_per_day_saved: int
    unused: bool | None
    reason: str
    metrics: list[str] = dataclasses.field(default_factory=list)  # the stored sample names it applies to


def users(usage: UsageIndex, unit: Unit, label: str) -> list[str]:
    """Who uses `label` on any name of the unit (a query may name the family or one sample name)."""
    return sorted({u for n in [unit.name, *unit.metric_names] for u in usage.users(n, label)})


def recommend(tier: str, unit: Unit, protected: set[str], budgets: Budgets, usage: UsageIndex | None,
              only: str | None = None) -> Recommendation | None:
    """The label whose removal saves the most series on `unit` (exact), preferring a label no query
    uses when it saves at least half as much as the best; with `only`, that label or nothing.
    None when no allowed label saves anything (protected labels and a family's shape never qualify)."""
    if unit.truncated or unit.count < 2:
        return None
    # le/quantile are never dropped, even where no type says the metric is a histogram or summary.
    banned = protected | SHAPE_LABELS
    names = [only] if only is not None else unit.label_names()
    options = [(label, unit.savings([label])) for label in names if label not in banned]
    options = [(label, saved) for label, saved in options if saved > 0]
    if not options:
        return None
    best_saved = max(saved for _, saved in options)
    unused = [(lb, s) for lb, s in options if usage and not users(usage, unit, lb) and 2 * s >= best_saved]
    label, saved = max(unused or options, key=lambda ls: (ls[1], ls[0]))
    who = users(usage, unit, label) if usage else None
    d = budgets.defaults
    samples_per_day = SECONDS_PER_DAY / d.scrape_interval_seconds
    if who is None:
        reason = "usage unknown: check rules and dashboards first"
    elif not who:
        reason = "no rule, dashboard or logged query uses it"
    else:
        reason = f"used by {', '.join(who[:3])}: aggregate it away (--emit otel-collector) rather than drop"
    return Recommendation(
        tier=tier, metric=unit.name, label=label, series_before=unit.count, series_after=unit.count - saved, saved=saved,
        memory_bytes_saved=saved * d.bytes_per_series,
        disk_bytes_per_day_saved=int(saved * samples_per_day * d.disk_bytes_per_sample),
        unused=None if who is None else not who, reason=reason, metrics=unit.metric_names,
    )
