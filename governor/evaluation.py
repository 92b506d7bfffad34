"""One evaluation, end to end: collect the inventory, gather usage, compare with history, analyse.

Shared by `bcgov budget report|fix` and `bcgov governor run` so all three see the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.redaction.url_credentials import display_url
from governor import analysis, churn, growth, usage
from governor.budgets import GOVERNOR, UNCLASSIFIED, Budgets
from governor.history import History
from governor.inventory import Inventory
from governor.promapi import PrometheusSource
from governor.sources import Source
from governor.tiers import Classifier

GROWTH_WINDOW_SECONDS = 7 * 86_400


@dataclasses.dataclass
class UsageOptions:
    """Where to look for label usage. Rules are read from the Prometheus source when there is one."""

    rules: bool = True
    dashboards: Path | None = None
    query_log: Path | None = None


@dataclasses.dataclass
class Evaluation:
    inventory: Inventory
    report: analysis.Report


def build_usage(source: Source, opts: UsageOptions) -> usage.UsageIndex | None:
    """A usage index from the available sources, or None when none was available (usage unknown)."""
    idx = usage.UsageIndex()
    have = False
    if opts.rules and isinstance(source, PrometheusSource):
        idx.add_source(f"rules of {display_url(source.base_url)}", usage.rule_expressions(source.rules()))
        have = True
    if opts.dashboards is not None and opts.dashboards.is_dir():
        idx.add_source(f"dashboards in {opts.dashboards}", usage.dashboard_expressions(opts.dashboards))
        have = True
    if opts.query_log is not None:
        idx.add_source(f"query log {opts.query_log}", usage.query_log_expressions(opts.query_log))
        have = True
    return idx if have else None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off while an inventory is built and analysed: millions of label-set tuples
    (which hold no cycles) made each full collection walk them all again, about half of the time
    at 1M series (bench/). Reference counting still frees everything as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def evaluate(
    source: Source,
    budgets: Budgets,
    history: History | None = None,
    usage_opts: UsageOptions | None = None,
    only_tier: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Collect and analyse once; record the evaluation in `history` when given."""
    with gc_paused():
        return _evaluate(source, budgets, history, usage_opts, only_tier, progress)


def _evaluate(source: Source, budgets: Budgets, history: History | None, usage_opts: UsageOptions | None,
              only_tier: str | None, progress: Callable[[int, int], None] | None) -> Evaluation:
    # A Prometheus-compatible API is inventoried in two phases (statistics, then enumeration of
    # what is at risk); scrape targets are read whole.
    inv = source.collect(progress, budgets) if isinstance(source, PrometheusSource) else source.collect(progress)
    idx = build_usage(source, usage_opts or UsageOptions())
    churn_stats: dict[str, churn.ChurnStat] | None = None
    trends: dict[str, growth.Growth] | None = None
    if history is not None:
        key = inv.source
        previous = history.load_snapshot(key)
        if previous is not None:
            churn_stats = churn.compute(previous, inv)
        split = Classifier(budgets).split(inv)
        tiers: dict[str, tuple[int, int | None]] = {t: (sum(m.count for m in split.get(t, {}).values()), b.max_series) for t, b in budgets.tiers.items()}
        for extra in (UNCLASSIFIED, GOVERNOR):
            if split.get(extra):
                tiers[extra] = (sum(m.count for m in split[extra].values()), None)
        history.record(key, inv.collected_at, inv.total_series, tiers,
                       {t: {n: m.count for n, m in ms.items()} for t, ms in split.items()})
        history.save_snapshot(key, churn.Snapshot.of(inv))
        since = inv.collected_at - GROWTH_WINDOW_SECONDS
        trends = {}
        for t, (_, budget) in tiers.items():
            g = growth.fit(history.tier_points(key, t, since), budget)
            if g is not None:
                trends[t] = g
    report = analysis.analyze(inv, budgets, idx, churn_stats, trends, only_tier)
    return Evaluation(inv, report)
