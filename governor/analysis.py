"""From an inventory and budgets to a per-tier report: usage, status, top metrics, and for the worst
metrics the label whose removal saves the most series, exactly.

Pure: no I/O. Usage (which labels queries name), churn and growth are computed elsewhere and passed
in, so each can be tested alone and the report works without any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from governor.budgets import GOVERNOR, UNCLASSIFIED, Budgets, Tier
from governor.churn import ChurnStat
from governor.growth import Growth
from governor.inventory import Inventory, MetricInventory, Phases
from governor.recommend import Recommendation, Unit, recommend, units_of
from governor.tiers import Classifier
from governor.usage import UsageIndex

OK, WARN, OVER, UNBUDGETED = "ok", "warn", "over", "unbudgeted"
TOP_VALUES = 5          # top values shown per label
MAX_VALUE_SHOWN = 120   # label values longer than this are cut in the report (a 100 kB value is not data to read)
MAX_LABELS_SHOWN = 20   # label stats kept per metric (most distinct values first)


@dataclasses.dataclass
class LabelStat:
    label: str
    distinct_values: int
    top_values: list[tuple[str, int]]
    cap: int | None
    over_cap: bool
    unused: bool | None  # None: usage unknown (no rules, dashboards or query log were read)


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
    estimated_from: str | None = None  # None: `series` is exact; else the statistics it came from
    counted_by: str | None = None      # exact, but counted without fetching the series (no label figures)


@dataclasses.dataclass
class LabelCount:
    """Distinct values of one label of one metric in a tier, with the cap that applies to it."""

    metric: str
    label: str
    distinct_values: int
    cap: int
    saved: int | None = None  # explosions only: series saved by dropping the label from its metric or family
    unit: str | None = None   # explosions only: the family the metric belongs to (its fix covers all members)


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
    estimated_series: int = 0  # how many of `series` are estimates (metrics not enumerated); 0: exact


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
    runbook_base_url: str = ""  # budgets' defaults.runbook_base_url: where the alerts' runbooks live
    phases: Phases | None = None  # how the inventory was collected (statistics, enumeration)
    estimated_metrics: list[str] = dataclasses.field(default_factory=list)  # counts taken from statistics

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
    `unclassified` when some series matched no tier, and `governor` when Prometheus holds the
    governor's own series or ALERTS (kept out of the tiers they describe; never remedied)."""
    d = budgets.defaults
    split = Classifier(budgets).split(inventory)
    names = list(budgets.tiers) + [t for t in (UNCLASSIFIED, GOVERNOR) if split.get(t)]
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
        runbook_base_url=d.runbook_base_url,
        phases=inventory.phases,
        estimated_metrics=inventory.estimated_metrics,
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
    explosions = [c for c in label_counts if c.distinct_values > c.cap]
    recs: list[Recommendation] = []
    if name != GOVERNOR:  # the governor's own series are bounded by design; nothing to remedy there
        units = units_of(metrics.values())
        recs = [r for u in units[: d.top_n] if (r := recommend(name, u, protected, budgets, usage))]
        recs += _explosion_fixes(name, units, explosions, recs, protected, budgets, usage)
    else:
        explosions = []
    recs.sort(key=lambda r: (-r.saved, r.metric, r.label))
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
        label_explosions=explosions,
        growth=growth,
        estimated_series=sum(m.count for m in metrics.values() if m.estimated_from is not None),
    )


def _explosion_fixes(tier: str, units: list[Unit], explosions: list[LabelCount], recs: list[Recommendation],
                     protected: set[str], budgets: Budgets, usage: UsageIndex | None) -> list[Recommendation]:
    """Fill in what dropping each exploded label saves (on its whole unit), and recommend that drop
    when the top-N recommendations do not already: an explosion is never left without a fix."""
    by_metric = {m.name: u for u in units for m in u.members}
    # A family's members explode together: one fix each (unit, label), reused, never recomputed.
    done: dict[tuple[str, str], Recommendation | None] = {(r.metric, r.label): r for r in recs}
    out: list[Recommendation] = []
    for c in explosions:
        unit = by_metric.get(c.metric)
        if unit is None:
            continue
        key = (unit.name, c.label)
        if key not in done:
            done[key] = fix = recommend(tier, unit, protected, budgets, usage, only=c.label)
            if fix:
                out.append(fix)
        fix = done[key]
        c.saved = fix.saved if fix else None
        c.unit = unit.name if unit.grouped else None
    return out


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
    return MetricReport(m.name, m.count, m.type, cap, cap is not None and m.count > cap, m.truncated and m.estimated_from is None and m.counted_by is None,
                        stats[:MAX_LABELS_SHOWN], churn, m.estimated_from, m.counted_by)


def shown_value(value: str) -> str:
    """A label value as the report shows it: cut past MAX_VALUE_SHOWN, saying how long it was."""
    if len(value) <= MAX_VALUE_SHOWN:
        return value
    return f"{value[:MAX_VALUE_SHOWN - 40]}... ({len(value)} characters)"
