"""Assigning series to tiers.

Order, first hit wins: the series' tier label (when it names a configured tier), the longest
matching metric name prefix (it identifies the exporter, so kube-state-metrics series about a
Kafka namespace stay in platform), the `job` label, the `namespace` label. Everything else is
`unclassified`: reported, and still counted in the totals.

Before all of that, the governor's own series (`bcgov_governor_*`) and Prometheus' `ALERTS` /
`ALERTS_FOR_STATE` go to the `governor` tier: they describe the tiers (one series per tier, metric
or alert) and would otherwise be counted inside the very budgets they report on.
"""

from __future__ import annotations

from collections.abc import Mapping

from governor.budgets import GOVERNOR, UNCLASSIFIED, Budgets
from governor.inventory import Inventory, LabelSet, MetricInventory

OWN_PREFIX = "bcgov_governor_"
OWN_NAMES = frozenset({"ALERTS", "ALERTS_FOR_STATE"})


def is_own(metric: str) -> bool:
    """The governor's own series and Prometheus' alert state series."""
    return metric.startswith(OWN_PREFIX) or metric in OWN_NAMES


class Classifier:
    """Maps (metric name, label set) to a tier name; precomputes lookups from the budgets."""

    def __init__(self, budgets: Budgets) -> None:
        self.tier_label = budgets.defaults.tier_label
        self.tiers = frozenset(budgets.tiers)
        # Longest prefix first so `kube_` does not shadow a more specific `kubelet_` elsewhere.
        self._prefixes = sorted(
            ((p, t.name) for t in budgets.tiers.values() for p in t.match.metric_prefixes),
            key=lambda pt: -len(pt[0]),
        )
        self._jobs = {j: t.name for t in budgets.tiers.values() for j in t.match.jobs}
        self._namespaces = {n: t.name for t in budgets.tiers.values() for n in t.match.namespaces}

    def by_metric_name(self, metric: str) -> str | None:
        for prefix, tier in self._prefixes:
            if metric.startswith(prefix):
                return tier
        return None

    def classify(self, metric: str, labels: LabelSet) -> str:
        if is_own(metric):
            return GOVERNOR
        d = dict(labels)
        explicit = d.get(self.tier_label)
        if explicit in self.tiers:
            return explicit
        by_name = self.by_metric_name(metric)
        if by_name:
            return by_name
        if d.get("job") in self._jobs:
            return self._jobs[d["job"]]
        if d.get("namespace") in self._namespaces:
            return self._namespaces[d["namespace"]]
        return UNCLASSIFIED

    def split(self, inventory: Inventory) -> dict[str, dict[str, MetricInventory]]:
        """tier -> metric -> that metric's series in the tier. A truncated metric (no series set)
        goes whole to the tier its name says, else to unclassified."""
        out: dict[str, dict[str, MetricInventory]] = {}
        for name, m in inventory.metrics.items():
            if is_own(name):
                out.setdefault(GOVERNOR, {})[name] = m
                continue
            if m.truncated:
                out.setdefault(self.by_metric_name(name) or UNCLASSIFIED, {})[name] = m
                continue
            whole = self._whole_metric_tier(name, m)
            if whole is not None:
                out.setdefault(whole, {})[name] = m
                continue
            parts: dict[str, list[LabelSet]] = {}
            for s in m.series:
                parts.setdefault(self.classify(name, s), []).append(s)
            if len(parts) == 1:
                out.setdefault(next(iter(parts)), {})[name] = m
            else:
                for tier, series in parts.items():
                    out.setdefault(tier, {})[name] = m.subset(series)
        return out

    def _whole_metric_tier(self, name: str, m: MetricInventory) -> str | None:
        """The one tier of every series of `m` when its label value counts decide it (the usual
        case, and no pass over the series); None when series must be classified one by one."""
        counts = m.all_value_counts()
        for label, mapping in ((self.tier_label, None), (None, None), ("job", self._jobs), ("namespace", self._namespaces)):
            if label is None:  # the metric name comes between the tier label and job
                by_name = self.by_metric_name(name)
                if by_name:
                    return by_name
                continue
            values: Mapping[str, int] = counts.get(label, {})
            hits = {v: n for v, n in values.items() if (v in self.tiers if mapping is None else v in mapping)}
            if not hits:
                continue
            tiers = {v if mapping is None else mapping[v] for v in hits}
            return tiers.pop() if len(tiers) == 1 and sum(hits.values()) == m.count else None
        return UNCLASSIFIED
