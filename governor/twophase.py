"""A two-phase inventory: the backend's cardinality statistics first, exact enumeration only where
a figure must be exact.

Phase 1 (governor.cardinality) gives series per metric as the backend counts them, in a few
requests at any size. Metrics the statistics do not list (Prometheus lists its top 10 only) are
counted exactly with a PromQL `count by (__name__)` (no series fetched). Phase 2 enumerates live
series exactly (governor.promapi), for:

1. metrics whose tier their labels may decide (they carry the tier label, or match no tier's
   metric prefix and carry a configured job or namespace): a name-only estimate could put their
   series in the wrong tier (other metrics without a prefix are unclassified, whole);
2. metrics with a label over its cap (explosion candidates): label values are counted in the label
   index, metric by metric, for labels whose values over all metrics exceed the smallest cap;
3. the metrics at risk (governor.atrisk): a metric at `warn_ratio` of its own cap, and the biggest
   units of each tier at warn or over, until they hold the tier's series above the warn line.

Steps 1-2 and the counts run first, so step 3 ranks every metric of a tier with the best counts there are. What is
not enumerated keeps the backend's count, marked estimated with its source; everything the report
recommends (what dropping a label saves) comes from enumerated series only, so it stays exact.
A backend with no statistics API, or with fewer series than `Limits.enumerate_below`, is enumerated
whole, and the inventory says so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from governor import atrisk, cardinality, errors, exposition
from governor.budgets import Budgets
from governor.inventory import Inventory, MetricInventory, Phases
from governor.promapi import AUTO, PrometheusSource
from governor.tiers import Classifier

Progress = Callable[[int, int], None]
COUNTED_BY = "PromQL count by (__name__) at the evaluation time"


def collect(src: PrometheusSource, budgets: Budgets, progress: Progress | None = None) -> Inventory:
    """The two-phase inventory of `src` under `budgets` (see the module docstring)."""
    at = src.now()
    started = time.monotonic()
    names = src.metric_names(at)
    backend = cardinality.detect(src.get) if src.backend == AUTO else src.backend
    types = src.metadata()
    if backend is None:
        note = (f"{src.describe()} offers no cardinality statistics API (Prometheus or VictoriaMetrics /api/v1/status/tsdb, "
                "Mimir /api/v1/cardinality): every series enumerated")
        return _whole(src, names, types, at, started, None, note)
    try:
        stats = cardinality.fetch(src.get, backend, at)
    except errors.SourceUnreachable:
        raise
    except errors.SourceError as exc:
        if src.backend != AUTO:  # named by the user: say it does not fit
            raise errors.SourceError(f"--backend {backend}: {exc}; pass the right --backend, or --backend enumerate") from exc
        return _whole(src, names, types, at, started, None, f"{backend} statistics unusable ({exc}): every series enumerated")
    if stats.total is not None and stats.total < src.limits.enumerate_below:
        note = (f"{stats.total} series by {stats.source}, fewer than {src.limits.enumerate_below}: every series enumerated "
                "(exact)")
        return _whole(src, names, types, at, started, stats, note)

    classifier = Classifier(budgets)
    must = _label_classified(src, budgets, classifier, names, at)
    must |= _explosion_candidates(src, stats, budgets, [n for n in names if n not in must], at)
    group = atrisk.family_groups(names, types)
    whole = {group(n) for n in must}  # a family is remedied as one unit, so enumerated as one
    must |= {n for n in names if group(n) in whole}
    stats_seconds = time.monotonic() - started

    t = time.monotonic()
    exact = src.enumerate(sorted(must), at, types, progress)
    metrics = dict(exact)
    # Not listed by the statistics (Prometheus' top 10), and no label analysis needed yet: counted
    # exactly in PromQL, which costs the backend less than fetching them and this process nothing.
    unlisted = sorted(n for n in names if n not in must and n not in stats.metrics)
    for n, count in src.count_by_name(unlisted, at).items():
        type_, family = exposition.family_of(n, types)
        metrics[n] = MetricInventory(n, frozenset(), count, type_, truncated=True, family=family, counted_by=COUNTED_BY)
    for n in names:
        if n not in must and n in stats.metrics:
            metrics[n] = _estimated(n, stats, types)
    risky = atrisk.select(classifier.split(Inventory(metrics, src.describe(), at)), budgets, group)
    more = src.enumerate(sorted(risky), at, types, progress, already=sum(m.count for m in exact.values()),
                         sizes={n: metrics[n].count for n in risky})
    for n in risky:  # a metric with no live series any more is absent from the answer: gone, not estimated
        metrics.pop(n, None)
    metrics.update(more)
    enum_seconds = time.monotonic() - t

    inv = src.inventory(metrics, at)
    estimated = [m for m in metrics.values() if m.estimated_from is not None]
    counted = [m for m in metrics.values() if m.counted_by is not None]
    enumerated = [m for m in metrics.values() if m.estimated_from is None and m.counted_by is None]
    inv.phases = Phases(
        backend=backend, statistics=stats.source, meaning=stats.meaning,
        statistics_seconds=stats_seconds, enumeration_seconds=enum_seconds,
        enumerated_metrics=len(enumerated), enumerated_series=sum(m.count for m in enumerated),
        estimated_metrics=len(estimated), estimated_series=sum(m.count for m in estimated),
        counted_metrics=len(counted), counted_series=sum(m.count for m in counted),
    )
    return inv


def _estimated(name: str, stats: cardinality.Statistics, types: dict[str, str]) -> MetricInventory:
    type_, family = exposition.family_of(name, types)
    return MetricInventory(name, frozenset(), stats.metrics[name], type_, truncated=True, family=family,
                           estimated_from=stats.source)


def _whole(src: PrometheusSource, names: list[str], types: dict[str, str], at: float, started: float,
           stats: cardinality.Statistics | None, note: str) -> Inventory:
    stats_seconds = time.monotonic() - started
    t = time.monotonic()
    metrics = src.enumerate(names, at, types)
    inv = src.inventory(metrics, at)
    inv.phases = Phases(
        backend=stats.backend if stats else None, statistics=stats.source if stats else None,
        meaning=stats.meaning if stats else None, statistics_seconds=stats_seconds,
        enumeration_seconds=time.monotonic() - t, enumerated_metrics=len(metrics),
        enumerated_series=sum(m.count for m in metrics.values()), estimated_metrics=0, estimated_series=0, note=note,
    )
    return inv


def _label_classified(src: PrometheusSource, budgets: Budgets, classifier: Classifier, names: list[str], at: float) -> set[str]:
    """Of `names`, the metrics whose series' tier their labels may decide (governor.tiers: the tier
    label first, then the metric prefix, then job, then namespace): those carrying the tier label,
    and those without a tier prefix that carry a configured job or namespace. Found in the label
    index; any other metric's tier is its name's (or unclassified), whole."""
    def carrying(label: str, values: set[str] | None) -> set[str]:
        if values is not None and not values:
            return set()
        regex = ".+" if values is None else "|".join(re.escape(v) for v in sorted(values))
        quoted = regex.replace("\\", "\\\\").replace('"', '\\"')  # a double-quoted PromQL string
        return set(src.label_values("__name__", f'{{{label}=~"{quoted}"}}', at))

    present = set(names)
    out = present & carrying(budgets.defaults.tier_label, None)
    unprefixed = {n for n in names if classifier.by_metric_name(n) is None}
    jobs = {j for t in budgets.tiers.values() for j in t.match.jobs}
    namespaces = {n for t in budgets.tiers.values() for n in t.match.namespaces}
    out |= unprefixed & (carrying("job", jobs) | carrying("namespace", namespaces))
    return out


def label_caps(budgets: Budgets) -> tuple[dict[str, int], int]:
    """(the smallest cap of each label with an explicit cap somewhere, the smallest cap of any
    other label): a label with at most that many values over all metrics cannot explode anywhere."""
    default = min([budgets.defaults.max_label_values] + [t.max_label_values for t in budgets.tiers.values()])
    caps: dict[str, int] = {}
    for t in budgets.tiers.values():
        for label, cap in t.label_caps.items():
            caps[label] = min(caps.get(label, default), cap)
    return caps, default


def _explosion_candidates(src: PrometheusSource, stats: cardinality.Statistics, budgets: Budgets,
                          names: list[str], at: float) -> set[str]:
    """Of `names`, the metrics that have a label with more values (in the label index) than the
    smallest cap that label has anywhere."""
    caps, default = label_caps(budgets)
    smallest = min([default, *caps.values()])
    counts = dict(stats.label_values)
    if not stats.labels_complete and (stats.label_values_bound is None or stats.label_values_bound > smallest):
        # Unlisted labels could be over a cap: count their values in the index, one request each.
        for label in src.label_names(at):
            if label not in counts:
                counts[label] = len(src.label_values(label, None, at))
    wanted = set(names)
    out: set[str] = set()
    for label, n in sorted(counts.items()):
        cap = caps.get(label, default)
        if label == "__name__" or n <= cap or not _LABEL.match(label):
            continue
        for metric in sorted(wanted & set(src.label_values("__name__", f'{{{label}=~".+"}}', at)) - out):
            if len(src.label_values(label, f'{{__name__="{metric}"}}', at)) > cap:
                out.add(metric)
    return out


_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
