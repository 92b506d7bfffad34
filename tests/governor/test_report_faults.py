"""Faults 10-15 of issue 12, each with the small input that showed it: what the report recommends
and how it reads to a person, label usage, and when the service calls its numbers stale.
Pure units over parsed pages (the parser itself is held to a real Prometheus in
test_corpus_integration.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from governor import analysis, budgets, growth, remediation, report, service, usage
from governor.churn import ChurnStat
from governor.inventory import Inventory
from governor.scrape import parse_exposition

ROOT = Path(__file__).resolve().parents[2]

B = budgets.parse("""\
tiers:
  serving:
    max_series: 100000
    match: {metric_prefixes: [http_, rpc_, api_]}
  platform:
    max_series: 1000
    match: {metric_prefixes: [bcgov_, node_]}
""", "b.yaml")


def page(lines: list[str]) -> Inventory:
    return parse_exposition("\n".join(lines) + "\n", "text/plain", "test", 1_000_000.0)


def histogram_page() -> list[str]:
    """A histogram (12 buckets) and a summary by path (30 values), namespace and pod (fixed)."""
    les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    out = ["# TYPE http_request_duration_seconds histogram"]
    for p in range(30):
        base = f'namespace="shop",pod="web-0",tier="serving",path="/p{p}"'
        out += [f'http_request_duration_seconds_bucket{{{base},le="{le}"}} 1' for le in les]
        out += [f"http_request_duration_seconds_sum{{{base}}} 1", f"http_request_duration_seconds_count{{{base}}} 1"]
    out += ["# TYPE rpc_latency_seconds summary"]
    for p in range(30):
        out += [f'rpc_latency_seconds{{path="/p{p}",quantile="{q}"}} 1' for q in ("0.5", "0.9", "0.99")]
        out += [f'rpc_latency_seconds_sum{{path="/p{p}"}} 1', f'rpc_latency_seconds_count{{path="/p{p}"}} 1']
    return out


# 10 ------------------------------------------------------------------------------------------------

def test_histogram_and_summary_are_one_family_and_keep_their_shape() -> None:
    rep = analysis.analyze(page(histogram_page()), B)
    recs = rep.tier("serving").recommendations
    assert {r.label for r in recs} == {"path"}  # never le or quantile
    by = {r.metric: r for r in recs}
    assert set(by) == {"http_request_duration_seconds", "rpc_latency_seconds"}  # one per family, not per sample name
    h = by["http_request_duration_seconds"]
    assert h.metrics == ["http_request_duration_seconds_bucket", "http_request_duration_seconds_count",
                         "http_request_duration_seconds_sum"]
    assert (h.series_before, h.series_after, h.saved) == (30 * 14, 14, 29 * 14)
    s = by["rpc_latency_seconds"]
    assert (s.series_before, s.series_after) == (30 * 5, 5)


def test_families_are_found_without_types() -> None:
    """No `# TYPE` lines (or a backend without a metadata API): the shape still makes the family."""
    untyped = [ln for ln in histogram_page() if not ln.startswith("#")]
    rep = analysis.analyze(page(untyped), B)
    recs = rep.tier("serving").recommendations
    assert {(r.metric, r.label, r.series_before, r.series_after) for r in recs} == {
        ("http_request_duration_seconds", "path", 420, 14), ("rpc_latency_seconds", "path", 150, 5)}


def test_fix_applies_to_every_series_of_the_family() -> None:
    inv = page(histogram_page())
    rep = analysis.analyze(inv, B)
    plan = remediation.plan(rep, inv, all_tiers=True)
    a = next(a for a in plan.actions if a.metric == "http_request_duration_seconds")
    assert (a.series_before, a.series_after) == (420, 14)
    relabel = yaml.safe_load(remediation.emit_prometheus_relabel(plan))["metric_relabel_configs"]
    rule = next(r for r in relabel if "http_request" in r["regex"])
    members = ["http_request_duration_seconds_bucket", "http_request_duration_seconds_count", "http_request_duration_seconds_sum"]
    assert all(re.fullmatch(rule["regex"], m) for m in members) and rule["target_label"] == "path"
    otel = yaml.safe_load(remediation.emit_otel_collector(plan))
    t = next(t for t in otel["processors"]["metricstransform/bcgov"]["transforms"] if "http_request" in t["include"])
    assert t["include"] == "^http_request_duration_seconds$"
    assert sorted(t["operations"][0]["label_set"]) == ["namespace", "pod", "tier"]  # everything but path


# 11 ------------------------------------------------------------------------------------------------

def explosion_page() -> list[str]:
    out = ["# TYPE api_requests_total counter"]
    out += [f'api_requests_total{{path="/item/{i}",code="{200 if i % 9 else 500}"}} 1' for i in range(1500)]
    out += ["# TYPE other_cache_keys gauge"]  # unclassified, with an explosion of its own
    out += [f'other_cache_keys{{key="k{i}"}} 1' for i in range(1200)]
    return out


def test_the_exploded_label_is_named_in_table_and_markdown_with_its_saving() -> None:
    rep = analysis.analyze(page(explosion_page()), budgets.parse(
        "tiers:\n  serving: {max_series: 1000, match: {metric_prefixes: [api_]}}\n", "b.yaml"))
    serving = rep.tier("serving")
    assert [(e.metric, e.label, e.distinct_values, e.saved) for e in serving.label_explosions] == [
        ("api_requests_total", "path", 1500, 1498)]
    assert any(r.label == "path" and r.saved == 1498 for r in serving.recommendations)
    table = report.render_table(rep)
    md = report.render_markdown(rep)
    for text in (table, md):
        assert re.search(r"path\W+of\W+api_requests_total\W+has 1500 values \(cap 1000\).*saves 1498", text), text
        assert "serving: the fixes above save up to 1498 of 1500 series; the tier is 500 over its budget of 1000 (enough)" in text
        assert re.search(r"key\W+of\W+other_cache_keys\W+has 1200 values", text)


def test_the_issues_shape_18000_values_at_91_9_percent() -> None:
    """The report that said "saves 62 of 18 376": a histogram of 18 000 series by a `route` label (6000 values)
    beside small metrics, at 91.9 % of a 20 000 budget."""
    lines = ["# TYPE http_server_duration_seconds histogram"]
    for i in range(6000):
        lines += [f'http_server_duration_seconds_bucket{{route="/r/{i}",le="{le}"}} 1' for le in ("0.1", "1")]
        lines += [f'http_server_duration_seconds_count{{route="/r/{i}"}} 1']
    lines += ["# TYPE http_sessions gauge"] + [f'http_sessions{{shard="{i}"}} 1' for i in range(376)]
    b = budgets.parse("tiers:\n  serving: {max_series: 20000, match: {metric_prefixes: [http_]}}\n", "b.yaml")
    rep = analysis.analyze(page(lines), b)
    t = rep.tier("serving")
    assert (t.series, t.status, f"{t.usage:.1%}") == (18376, analysis.WARN, "91.9%")
    top = t.recommendations[0]
    assert (top.metric, top.label, top.saved) == ("http_server_duration_seconds", "route", 18000 - 3)
    table = report.render_table(rep)
    assert "explosion: label route of http_server_duration_seconds (the whole family) has 6000 values" in table
    assert "serving: the fixes above save up to 18372 of 18376 series" in table


def test_unclassified_explosions_fail_ci_under_the_flag(cli, runner, tmp_path: Path) -> None:
    from tests import servers

    bfile = tmp_path / "b.yaml"
    bfile.write_text("tiers:\n  serving: {max_series: 100000, match: {metric_prefixes: [api_]}}\n")
    with servers.serve_exposition("\n".join(explosion_page()) + "\n") as ex:
        args = ["budget", "report", "--scrape", ex.url, "--budgets", str(bfile), "--no-history"]
        assert runner.invoke(cli, args).exit_code == 0
        flagged = runner.invoke(cli, [*args, "--fail-on-explosion"])
    assert flagged.exit_code == 3
    assert "--fail-on-explosion" in runner.invoke(cli, ["budget", "report", "--help"]).stdout


# 12 ------------------------------------------------------------------------------------------------

def test_the_governors_own_series_and_alerts_are_kept_out_of_tier_budgets() -> None:
    lines = ["# TYPE node_load1 gauge", "node_load1 1",
             "# TYPE bcgov_governor_metric_series gauge"]
    lines += [f'bcgov_governor_metric_series{{tier="platform",metric="m{i}"}} 1' for i in range(40)]
    lines += ["# TYPE ALERTS gauge"]
    lines += [f'ALERTS{{alertname="A{i}",alertstate="firing",tier="platform",pod="p{i}"}} 1' for i in range(30)]
    rep = analysis.analyze(page(lines), B)
    assert rep.tier("platform").series == 1
    own = rep.tier(budgets.GOVERNOR)
    assert own.series == 70 and own.status == analysis.UNBUDGETED and own.recommendations == []
    assert all(r.metric not in ("ALERTS", "bcgov_governor_metric_series") for t in rep.tiers for r in t.recommendations)
    assert rep.total_series == 71  # still counted in the total Prometheus holds


def test_the_governor_tier_name_is_reserved() -> None:
    try:
        budgets.parse(f"tiers:\n  {budgets.GOVERNOR}: {{max_series: 5, match: {{metric_prefixes: [x_]}}}}\n", "b.yaml")
    except budgets.BudgetError as exc:
        assert "reserved" in str(exc)
    else:
        raise AssertionError("a tier named like the governor's own was accepted")


# 13 ------------------------------------------------------------------------------------------------

def test_table_columns_legends_by_clauses_and_matchers_are_uses(tmp_path: Path) -> None:
    idx = usage.UsageIndex()
    idx.add_source("shipped dashboards", usage.dashboard_expressions(ROOT / "dashboards" / "json"))
    assert not idx.is_unused("bcgov_governor_metric_series", "metric")  # "Top metrics by series" table column
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.json").write_text(json.dumps({"panels": [
        {"type": "timeseries", "targets": [{"expr": "rate(app_requests_total[5m])", "legendFormat": "{{ pod }} {{code}}"}]},
        {"type": "timeseries", "targets": [{"expr": "sum without (instance) (app_bytes)"}]},
        {"type": "row", "panels": [{"type": "table", "targets": [{"expr": "app_info", "format": "table"}]}]},
    ]}))
    idx.add_source("dashboards", usage.dashboard_expressions(d))
    idx.add_source("rules", usage.rule_expressions({"groups": [{"rules": [
        {"name": "R", "query": 'sum by (namespace) (app_up{team="a"}) > 0'}]}]}))
    assert not idx.is_unused("app_requests_total", "pod") and not idx.is_unused("app_requests_total", "code")
    assert idx.is_unused("app_requests_total", "path")  # nothing shows or filters it
    assert not idx.is_unused("app_bytes", "instance")
    assert not idx.is_unused("app_info", "version")  # a table shows every label as a column
    assert not idx.is_unused("app_up", "namespace") and not idx.is_unused("app_up", "team")
    assert idx.is_unused("app_up", "pod")


# 14 ------------------------------------------------------------------------------------------------

def test_words_a_person_reads() -> None:
    rep = analysis.analyze(page(explosion_page()), B)
    serving = rep.tier("serving")
    serving.growth = growth.Growth(5, 3600, 120.0, 0.0)
    rep.tier(budgets.UNCLASSIFIED).growth = growth.Growth(5, 3600, 0.0, None)
    serving.top_metrics[0].churn = ChurnStat("api_requests_total", 0, 2, 2, 0, None, 0, 0.0)
    table = report.render_table(rep, width=100)
    md = report.render_markdown(rep)
    for text in (table, md):
        assert "budget in over" not in text and "budget in never" not in text and "(None)" not in text
        assert "over budget now" in text and "not growing" in text
    # Every recommendation is one line with its saving and its reason, however narrow the terminal.
    drops = [ln for ln in table.splitlines() if ln.lstrip().startswith("drop ")]
    assert drops and all("saves" in ln and ";" in ln for ln in drops), drops


def test_runbook_links_are_absolute_or_the_report_says_how() -> None:
    rep = analysis.analyze(page(explosion_page()), B)
    for text in (report.render_table(rep), report.render_markdown(rep)):
        assert "runbook_base_url" in text  # the shipped default is relative: say how to set it
    absolute = budgets.parse("defaults: {runbook_base_url: 'https://git.example/ops/runbooks/'}\n"
                             "tiers:\n  serving: {max_series: 1000, match: {metric_prefixes: [api_]}}\n", "b.yaml")
    rep = analysis.analyze(page(explosion_page()), absolute)
    md = report.render_markdown(rep)
    assert "https://git.example/ops/runbooks/BcgovTierBudgetExceeded.md" in md
    assert "https://git.example/ops/runbooks/BcgovLabelValueExplosion.md" in md
    assert "runbook_base_url" not in md


# 15 ------------------------------------------------------------------------------------------------

class Dead:
    def describe(self) -> str:
        return "dead"

    def collect(self, progress=None):  # noqa: ANN001
        from governor import errors
        raise errors.SourceUnreachable("cannot reach the stand-in source")

    def close(self) -> None:
        pass


def test_stale_only_after_stale_after_seconds() -> None:
    clock = [1_000_000.0]
    gov = service.Governor(Dead(), B, interval_seconds=30, clock=lambda: clock[0])
    gov._state.report = analysis.analyze(page(["# TYPE node_load1 gauge", "node_load1 1"]), B)  # a good evaluation before
    gov._state.last_success, gov._state.source_up = clock[0], True
    registry = CollectorRegistry()
    gov.register(registry)

    def stale() -> float:
        text = generate_latest(registry).decode()
        return float(re.search(r"^bcgov_governor_stale (\S+)$", text, re.M).group(1))

    clock[0] += 35
    assert gov.evaluate_once() is False  # the source went down
    assert stale() == 0.0  # 35 s is not stale when stale_after_seconds is 600
    clock[0] += 600 - 35
    assert stale() == 0.0
    clock[0] += 1
    assert stale() == 1.0
