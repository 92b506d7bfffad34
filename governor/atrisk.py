"""Which estimated metrics a two-phase inventory must enumerate exactly: the metrics at risk.

Pure: no I/O. The rule (issue 13's "over the warn ratio, or the top contributors of a tier over
budget"), per budgeted tier:

- a metric with its own cap (`metrics:` in budgets.yaml) at `warn_ratio` of that cap or above;
- when the tier is at its warn line or above (`series >= warn_ratio * max_series`), its biggest
  units (a metric, or the sample names of one histogram/summary family, which are remedied
  together), biggest first, until they hold at least the tier's series above the warn line, never
  more than `defaults.top_n` units (the report recommends on the top N units only).

Those are the figures a person acts on, so they must be exact; a fix of a smaller unit cannot save
more than that unit holds, which is why the biggest come first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from governor import exposition
from governor.budgets import Budgets
from governor.inventory import MetricInventory

_FAMILY_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def family_groups(names: Iterable[str], types: dict[str, str]) -> Callable[[str], str]:
    """name -> the unit it is remedied with: its family by metadata, else by shape of the names
    alone (a backend without metadata): `X_bucket`, `X_count`, `X_sum`, `X_created` go with `X` when
    `X_bucket` exists, or when `X_count` and `X_sum` exist (a summary, whose quantiles are `X`)."""
    present = set(names)
    bases = {n[: -len("_bucket")] for n in present if n.endswith("_bucket")}
    bases |= {n[: -len("_count")] for n in present if n.endswith("_count") and n[: -len("_count")] + "_sum" in present}

    def group(name: str) -> str:
        _, family = exposition.family_of(name, types)
        if family:
            return family
        if name in bases:
            return name
        for suffix in _FAMILY_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in bases:
                return name[: -len(suffix)]
        return name

    return group


def select(split: dict[str, dict[str, MetricInventory]], budgets: Budgets, group: Callable[[str], str]) -> set[str]:
    """The metrics of `split` (tier -> metric -> inventory) without a series set (estimated, or
    counted only) that must be enumerated: see the module docstring."""
    out: set[str] = set()
    top_n = budgets.defaults.top_n
    for tier_name, metrics in split.items():
        tier = budgets.tiers.get(tier_name)
        if tier is None:  # unclassified and governor have no budget to be at risk of
            continue
        for name, m in metrics.items():
            cap = tier.metric_caps.get(name)
            if cap is not None and m.count >= tier.warn_ratio * cap:
                out.add(name)
        series = sum(m.count for m in metrics.values())
        line = tier.warn_ratio * tier.max_series
        if series < line:
            continue
        units: dict[str, list[MetricInventory]] = {}
        for m in metrics.values():
            units.setdefault(group(m.name), []).append(m)
        ranked = sorted(units.items(), key=lambda u: (-sum(m.count for m in u[1]), u[0]))
        held = 0
        for _, members in ranked[:top_n]:
            out.update(m.name for m in members)
            held += sum(m.count for m in members)
            if held >= series - line:
                break
    return {n for tier in split.values() for n, m in tier.items()
            if n in out and (m.estimated_from is not None or m.counted_by is not None)}
