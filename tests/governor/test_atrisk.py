"""governor.atrisk: which estimated metrics must be enumerated (pure; table-driven)."""

from __future__ import annotations

import pytest

from governor import atrisk, budgets
from governor.inventory import MetricInventory

B = budgets.parse("""\
defaults: {top_n: 2}
tiers:
  stream:
    max_series: 100
    match: {metric_prefixes: [kafka_]}
    metrics: {kafka_capped: 10}
""")


def est(name: str, n: int) -> MetricInventory:
    return MetricInventory(name, frozenset(), n, truncated=True, estimated_from="stats")


def exact(name: str, n: int) -> MetricInventory:
    return MetricInventory.of(name, [(("i", str(i)),) for i in range(n)])


@pytest.mark.parametrize("metrics, expected", [
    # 79 < warn line 80: nothing at risk.
    ([est("kafka_a", 50), est("kafka_b", 29)], set()),
    # 80 at the line, excess 0: the biggest unit alone.
    ([est("kafka_a", 50), est("kafka_b", 30)], {"kafka_a"}),
    # 130, excess 50: kafka_a (40) is not enough, kafka_b (35) too; kafka_c not needed.
    ([est("kafka_a", 40), est("kafka_b", 35), est("kafka_c", 30), est("kafka_d", 25)], {"kafka_a", "kafka_b"}),
    # excess 130 is never covered: top_n (2) units at most.
    ([est("kafka_a", 70), est("kafka_b", 70), est("kafka_c", 70)], {"kafka_a", "kafka_b"}),
    # A histogram family is one unit (20 + 15 + 15 = 50 beats kafka_x's 45), enumerated together.
    ([est("kafka_h_bucket", 20), est("kafka_h_count", 15), est("kafka_h_sum", 15), est("kafka_x", 45)],
     {"kafka_h_bucket", "kafka_h_count", "kafka_h_sum"}),
    # An enumerated unit ranks but is not returned (already exact).
    ([exact("kafka_a", 60), est("kafka_b", 30)], set()),
    ([exact("kafka_a", 60), est("kafka_b", 50), est("kafka_c", 40)], {"kafka_b"}),
    # Counted exactly but not fetched (PromQL count): enumerated when at risk, like an estimate.
    ([MetricInventory("kafka_a", frozenset(), 90, truncated=True, counted_by="count"), est("kafka_b", 5)], {"kafka_a"}),
    # A metric at warn_ratio of its own cap, in a tier far from its budget.
    ([est("kafka_capped", 8), est("kafka_a", 5)], {"kafka_capped"}),
    ([est("kafka_capped", 7), est("kafka_a", 5)], set()),
])
def test_select(metrics: list[MetricInventory], expected: set[str]) -> None:
    split = {"stream": {m.name: m for m in metrics}}
    group = atrisk.family_groups([m.name for m in metrics], {})
    assert atrisk.select(split, B, group) == expected


def test_unbudgeted_tiers_are_never_at_risk() -> None:
    split = {"unclassified": {"x": est("x", 10_000)}, "governor": {"bcgov_governor_a": est("bcgov_governor_a", 10_000)}}
    assert atrisk.select(split, B, atrisk.family_groups(["x"], {})) == set()


@pytest.mark.parametrize("names, types, name, unit", [
    (["h_bucket", "h_count", "h_sum"], {}, "h_count", "h"),
    (["s", "s_count", "s_sum"], {}, "s", "s"),           # a summary's quantile series
    (["c_count"], {}, "c_count", "c_count"),             # no _sum or _bucket beside it: its own unit
    (["h_bucket", "h_count"], {"h": "histogram"}, "h_bucket", "h"),  # by metadata
    (["g", "g_total"], {"g": "gauge"}, "g_total", "g_total"),
])
def test_family_groups(names: list[str], types: dict[str, str], name: str, unit: str) -> None:
    assert atrisk.family_groups(names, types)(name) == unit
