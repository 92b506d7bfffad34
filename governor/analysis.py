"""From an inventory and budgets to a per-tier report: usage, status, top metrics, and for the worst
metrics the label whose removal saves the most series, exactly.

Pure: no I/O. Usage (which labels queries name), churn and growth are computed elsewhere and passed
in, so each can be tested alone and the report works without any of them.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from governor.budgets import UNCLASSIFIED, Budgets, Tier
from governor.churn import ChurnStat
from governor.growth import Growth
from governor.inventory import Inventory, MetricInventory
from governor.tiers import Classifier
from governor.usage import UsageIndex

OK, WARN, OVER, UNBUDGETED = "ok", "warn", "over", "unbudgeted"
TOP_VALUES = 5          # top values shown per label
MAX_VALUE_SHOWN = 120   # label values longer than this are cut in the report (a 100 kB value is not data to read)
MAX_LABELS_SHOWN = 20   # label stats kept per metric (most distinct values first)
SECONDS_PER_DAY = 86_400


@dataclasses.dataclass
class LabelStat:
    label: str
    distinct_values: int
    top_values: list[tuple[str, int]]
    cap: int | None
    over_cap: bool
    unused: bool | None  # None: usage unknown (no rules, dashboards or query log were read)


@dataclasses.dataclass
class Recommendation:
    tier: str
    metric: str
    label: str
    series_before: int
    series_after: int
    saved: int
    memory_bytes_saved: int
    disk_bytes_per_day_saved: int
    unused: bool | None
    reason: str


@dataclasses.dataclass
class MetricReport:
    name: str
    series: int
    type: str | None
    cap: int | None
    over_cap: bool
    truncated: bool
    labels: list[LabelStat]
    churn: ChurnStat | None = None


@dataclasses.dataclass
class LabelCount:
    """Distinct values of one label of one metric in a tier, with the cap that applies to it."""

    metric: str
    label: str
    distinct_values: int
    cap: int


@dataclasses.dataclass
class TierReport:
    name: str
    series: int
    budget: int | None
    usage: float | None
    warn_ratio: float | None
    status: str
    problems: list[str]
    metric_count: int
    top_metrics: list[MetricReport]
    recommendations: list[Recommendation]
    projected_savings: int
    memory_bytes: int
    top_labels: list[LabelCount]       # top N (metric, label) by distinct values over all metrics
    label_explosions: list[LabelCount]  # every (metric, label) above its cap (explicit or default)
    growth: Growth | None = None


@dataclasses.dataclass
class Report:
    generated_at: float
    source: str
    total_series: int
    head: dict[str, float] | None
    bytes_per_series: int
    tiers: list[TierReport]
    truncated_metrics: list[str]
    usage_sources: list[str]
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. a target that exposed nothing

    def tier(self, name: str) -> TierReport:
        return next(t for t in self.tiers if t.name == name)

    def worst_status(self) -> str:
        """over when any tier is over; warn when any tier is at warn or there is a warning."""
        statuses = {t.status for t in self.tiers}
        return OVER if OVER in statuses else WARN if WARN in statuses or self.warnings else OK


def status_of(series: int, tier: Tier, cap_problems: Iterable[str] = ()) -> str:
    """over: above max_series or any per-metric/per-label cap; warn: at or above warn_ratio."""
    if series > tier.max_series or any(True for _ in cap_problems):
        return OVER
    if series >= tier.warn_ratio * tier.max_series:
        return WARN
    return OK


def analyze(
    inventory: Inventory,
    budgets: Budgets,
    usage: UsageIndex | None = None,
    churn: dict[str, ChurnStat] | None = None,
    growth: dict[str, Growth] | None = None,
    only_tier: str | None = None,
) -> Report:
    """Build the report. Every configured tier appears (with 0 series if nothing matched), plus
    `unclassified` when some series matched no tier."""
    d = budgets.defaults
    split = Classifier(budgets).split(inventory)
    names = list(budgets.tiers) + ([UNCLASSIFIED] if split.get(UNCLASSIFIED) else [])
    if only_tier:
        names = [n for n in names if n == only_tier]
    tiers = [
        _tier_report(name, split.get(name, {}), budgets.tiers.get(name), budgets, usage, churn or {}, (growth or {}).get(name))
        for name in names
    ]
    return Report(
        generated_at=inventory.collected_at,
        source=inventory.source,
        total_series=inventory.total_series,
        head=inventory.head,
        bytes_per_series=d.bytes_per_series,
        tiers=tiers,
        truncated_metrics=inventory.truncated_metrics,
        usage_sources=usage.sources if usage else [],
        warnings=list(inventory.warnings),
    )


def _tier_report(name: str, metrics: dict[str, MetricInventory], tier: Tier | None, budgets: Budgets,
                 usage: UsageIndex | None, churn: dict[str, ChurnStat], growth: Growth | None) -> TierReport:
    d = budgets.defaults
    series = sum(m.count for m in metrics.values())
    ranked = sorted(metrics.values(), key=lambda m: (-m.count, m.name))
    problems: list[str] = []
    reports: list[MetricReport] = []
    label_counts: list[LabelCount] = []
    for m in ranked:
        mr = _metric_report(m, tier, d.max_label_values, usage, churn.get(m.name))
        label_counts += [LabelCount(m.name, ls.label, ls.distinct_values, ls.cap or d.max_label_values) for ls in mr.labels]
        if mr.over_cap:
            problems.append(f"{m.name} has {m.count} series, over its cap of {mr.cap}")
        for ls in mr.labels:
            if ls.over_cap:
                problems.append(f"{m.name} label {ls.label} has {ls.distinct_values} values, over its cap of {ls.cap}")
        # Only the top N are kept in the report, but caps are checked on every metric.
        if len(reports) < d.top_n:
            reports.append(mr)
    protected = set(d.protected_labels) | {d.tier_label}
    if tier is not None and tier.match.namespaces:
        protected.add("namespace")  # dropping it would move series to another tier
    recs = [r for m in ranked[: d.top_n] if (r := recommend(name, m, protected, budgets, usage))]
    recs.sort(key=lambda r: (-r.saved, r.metric))
    return TierReport(
        name=name,
        series=series,
        budget=tier.max_series if tier else None,
        usage=series / tier.max_series if tier else None,
        warn_ratio=tier.warn_ratio if tier else None,
        status=status_of(series, tier, problems) if tier else UNBUDGETED,
        problems=problems,
        metric_count=len(metrics),
        top_metrics=reports,
        recommendations=recs,
        projected_savings=sum(r.saved for r in recs),
        memory_bytes=series * d.bytes_per_series,
        top_labels=sorted(label_counts, key=lambda c: (-c.distinct_values, c.metric, c.label))[: d.top_n],
        label_explosions=[c for c in label_counts if c.distinct_values > c.cap],
        growth=growth,
    )


def _metric_report(m: MetricInventory, tier: Tier | None, default_label_cap: int, usage: UsageIndex | None,
                   churn: ChurnStat | None) -> MetricReport:
    cap = tier.metric_caps.get(m.name) if tier else None
    stats = []
    for label, counts in sorted(m.all_value_counts().items()):
        lcap = tier.label_caps.get(label, tier.max_label_values) if tier else default_label_cap
        explicit = tier is not None and label in tier.label_caps
        stats.append(LabelStat(
            label=label,
            distinct_values=len(counts),
            top_values=[(shown_value(v), n) for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]],
            cap=lcap,
            # Only configured caps gate the status; the default cap drives the explosion alert.
            over_cap=explicit and len(counts) > lcap,
            unused=usage.is_unused(m.name, label) if usage else None,
        ))
    stats.sort(key=lambda s: (-s.distinct_values, s.label))
    return MetricReport(m.name, m.count, m.type, cap, cap is not None and m.count > cap, m.truncated,
                        stats[:MAX_LABELS_SHOWN], churn)


def shown_value(value: str) -> str:
    """A label value as the report shows it: cut past MAX_VALUE_SHOWN, saying how long it was."""
    if len(value) <= MAX_VALUE_SHOWN:
        return value
    return f"{value[:MAX_VALUE_SHOWN - 40]}... ({len(value)} characters)"


def recommend(tier: str, m: MetricInventory, protected: set[str], budgets: Budgets,
              usage: UsageIndex | None) -> Recommendation | None:
    """The label whose removal saves the most series on `m` (exact), preferring a label no query
    uses when it saves at least half as much as the best; None when no label saves anything."""
    if m.truncated or m.count < 2:
        return None
    options = [(label, m.savings([label])) for label in m.label_names() if label not in protected]
    options = [(label, saved) for label, saved in options if saved > 0]
    if not options:
        return None
    best_saved = max(saved for _, saved in options)
    unused = [(lb, s) for lb, s in options if usage and usage.is_unused(m.name, lb) and 2 * s >= best_saved]
    label, saved = max(unused or options, key=lambda ls: (ls[1], ls[0]))
    is_unused = usage.is_unused(m.name, label) if usage else None
    d = budgets.defaults
    samples_per_day = SECONDS_PER_DAY / d.scrape_interval_seconds
    if is_unused:
        reason = "no rule, dashboard or logged query uses this label"
    elif usage:
        reason = f"used by {', '.join(usage.users(m.name, label)[:3])}: fold it into an aggregate before dropping"
    else:
        reason = "usage unknown: check rules and dashboards before dropping"
    return Recommendation(
        tier=tier, metric=m.name, label=label, series_before=m.count, series_after=m.count - saved, saved=saved,
        memory_bytes_saved=saved * d.bytes_per_series,
        disk_bytes_per_day_saved=int(saved * samples_per_day * d.disk_bytes_per_sample),
        unused=is_unused, reason=reason,
    )
