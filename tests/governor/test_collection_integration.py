"""The fast collection (names from the label index, several names per request, requests in
parallel, cached value counts, tiers decided from value counts where they suffice) gives exactly
what the plain way gives: one instant query of every series at the same time, each series
classified on its own. Real Prometheus scraping a real exporter, with series that went stale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from governor import analysis, budgets, report
from governor.inventory import Inventory, MetricInventory, label_set
from governor.promapi import Limits, PrometheusSource
from governor.tiers import Classifier
from tests import servers

pytestmark = pytest.mark.integration

BUDGETS = budgets.parse("""\
tiers:
  stream: {max_series: 500, match: {metric_prefixes: [redpanda_]}}
  batch: {max_series: 300, match: {namespaces: [batch]}}
  oltp: {max_series: 100, match: {jobs: [pg]}}
""", "collection.yaml")


def exposition(with_gone: bool) -> str:
    """Whole-tier metrics, metrics split across tiers (tier label, namespace), odd names and
    values; `with_gone` adds a metric and some series that a later scrape drops (they go stale)."""
    lines = ["# TYPE redpanda_part gauge"]
    lines += [f'redpanda_part{{topic="t{t}",partition="{p}"}} 1' for t in range(2) for p in range(150 if with_gone else 120)]
    lines += ["# TYPE redpanda_mixed gauge"]
    # The tier label overrides the prefix; a value naming no tier falls back to the prefix.
    lines += [f'redpanda_mixed{{tier="{("batch", "stream", "nosuch")[i % 3]}",p="{i}"}} 1' for i in range(90)]
    lines += ["# TYPE app_split gauge"]
    lines += [f'app_split{{namespace="{("batch", "other")[i % 2]}",id="{i % 7}",run="{i}"}} 1' for i in range(60)]
    lines += ["# TYPE app_batch gauge"]
    lines += [f'app_batch{{namespace="batch",id="{i}",shard="{i % 4}"}} 1' for i in range(40)]
    lines += ["# TYPE app:rate:sum gauge", 'app:rate:sum{mode="a"} 1', 'app:rate:sum{mode="b"} 2']
    lines += ["# TYPE odd gauge", 'odd{v="a\\"b\\\\c"} 1', 'odd{v="\u00fc"} 1', 'odd{v="x|y.*"} 1']
    if with_gone:
        lines += ["# TYPE gone_metric gauge"] + [f'gone_metric{{k="{i}"}} 1' for i in range(5)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.PrometheusServer]:
    tmp = tmp_path_factory.mktemp("collection")
    with servers.serve_exposition(exposition(with_gone=True)) as ex, \
            servers.start_prometheus(servers.scrape_config(ex.target, job="exporter"), tmp) as p:
        p.wait_for_first_scrape("exporter")
        changed_at = time.time()
        ex.set_body(exposition(with_gone=False))
        p.wait_for_scrape_after("exporter", changed_at)
        yield p


def plain_inventory(url: str, at: float) -> Inventory:
    """Every live series in one instant query at `at`, grouped by metric: the reference."""
    src = PrometheusSource(url, limits=Limits(parallel=1))
    try:
        rows = src.query('{__name__=~".+"}', at)
    finally:
        src.close()
    sets: dict[str, set] = {}
    for r in rows:
        sets.setdefault(r["metric"]["__name__"], set()).add(label_set(r["metric"]))
    return Inventory({n: MetricInventory.of(n, s) for n, s in sets.items()}, "reference", at)


def per_series_split(inv: Inventory) -> dict[str, dict[str, frozenset]]:
    c = Classifier(BUDGETS)
    out: dict[str, dict[str, set]] = {}
    for name, m in inv.metrics.items():
        for s in m.series:
            out.setdefault(c.classify(name, s), {}).setdefault(name, set()).add(s)
    return {t: {n: frozenset(s) for n, s in ms.items()} for t, ms in out.items()}


def test_fast_collection_equals_one_plain_query(prom: servers.PrometheusServer) -> None:
    at = time.time()
    src = PrometheusSource(prom.url, limits=Limits(names_per_request=2, parallel=3), clock=lambda: at)
    try:
        fast = src.collect()
    finally:
        src.close()
    plain = plain_inventory(prom.url, at)

    # Stale series and metrics are in neither (their names are still in the index).
    assert "gone_metric" not in fast.metrics and "gone_metric" not in plain.metrics
    assert fast.metrics["redpanda_part"].count == 240
    assert sorted(fast.metrics) == sorted(plain.metrics)
    for name, m in plain.metrics.items():
        assert fast.metrics[name].series == m.series, name
    assert fast.metrics["odd"].value_counts("v") == {'a"b\\c': 1, "\u00fc": 1, "x|y.*": 1}

    # Tiers decided from value counts equal tiers decided series by series.
    split = Classifier(BUDGETS).split(fast)
    assert {t: {n: m.series for n, m in ms.items()} for t, ms in split.items()} == per_series_split(plain)
    assert set(split["stream"]) == {"redpanda_part", "redpanda_mixed"} and split["batch"]["redpanda_mixed"].count == 30
    assert split["batch"]["app_split"].count == 30 and split["unclassified"]["app_split"].count == 30

    # And so the reports are identical, savings included.
    fast.source = plain.source = "same"
    fast.head = None
    for name, m in plain.metrics.items():  # types come from /api/v1/metadata, not from the series
        m.type = fast.metrics[name].type
    a, b = (report.to_dict(analysis.analyze(i, BUDGETS)) for i in (fast, plain))
    assert a == b
    stream = next(t for t in a["tiers"] if t["name"] == "stream")
    assert stream["series"] == 240 + 60
    assert ("redpanda_part", "partition", 240, 2) in {(r["metric"], r["label"], r["series_before"], r["series_after"])
                                                       for r in stream["recommendations"]}


def test_budget_report_cli_counts_live_series_only(prom: servers.PrometheusServer, cli, runner, tmp_path: Path) -> None:
    import json

    b = tmp_path / "b.yaml"
    b.write_text("tiers:\n  stream: {max_series: 500, match: {metric_prefixes: [redpanda_]}}\n")
    result = runner.invoke(cli, ["budget", "report", "--prometheus", prom.url, "--budgets", str(b), "--no-history",
                                 "--no-rules", "--format", "json", "--tier", "stream"])
    assert result.exit_code == 0, result.output
    # Only stream is configured here, so tier="batch" names no tier: all 90 of redpanda_mixed count.
    assert json.loads(result.stdout)["tiers"][0]["series"] == 240 + 90
