"""Pure analysis: exact savings from series sets, classification order, statuses, recommendations
preferring unused labels, usage extraction from PromQL, churn, growth and the history database."""

from __future__ import annotations

from pathlib import Path

import population
import pytest

from governor import analysis, budgets, churn, growth, history, remediation, usage
from governor.inventory import Inventory, MetricInventory, label_set
from governor.scrape import parse_exposition
from governor.tiers import Classifier

B = budgets.parse(population.BUDGETS, "b.yaml")


def inv(text: str | None = None, now: float = 1000.0) -> Inventory:
    return parse_exposition(text or population.exposition(), "text/plain", "test", now)


def test_savings_are_exact_from_the_series_set() -> None:
    m = inv().metrics[population.FLINK]
    assert m.count == 53
    assert m.series_without(["task_attempt"]) == 3
    assert m.savings(["task_attempt"]) == 50
    assert m.savings(["task_name"]) == 30
    assert m.savings(["task_name", "task_attempt"]) == 52
    assert m.distinct_values("task_attempt") == 23
    assert m.value_counts("task_name") == {"a": 20, "b": 10, "c": 23}


def test_classification_order_tier_label_prefix_job_namespace() -> None:
    b = budgets.parse("""\
tiers:
  stream: {max_series: 10, match: {metric_prefixes: [kafka_], jobs: [redpanda]}}
  oltp: {max_series: 10, match: {namespaces: [db]}}
  platform: {max_series: 10, match: {metric_prefixes: [kube_, kubelet_]}}
""")
    c = Classifier(b)
    assert c.classify("kube_pod_info", label_set({"namespace": "db"})) == "platform"      # prefix beats namespace
    assert c.classify("up", label_set({"job": "redpanda", "namespace": "db"})) == "stream"  # job beats namespace
    assert c.classify("up", label_set({"namespace": "db"})) == "oltp"
    assert c.classify("kube_x", label_set({"tier": "oltp"})) == "oltp"                     # explicit tier label wins
    assert c.classify("kube_x", label_set({"tier": "nonsense"})) == "platform"
    assert c.classify("up", label_set({})) == "unclassified"


def test_report_counts_statuses_and_unclassified() -> None:
    r = analysis.analyze(inv(), B)
    got = {t.name: (t.series, t.status) for t in r.tiers}
    assert got == {"stream": (55, "over"), "oltp": (4, "ok"), "batch": (22, "warn"), "unclassified": (3, "unbudgeted")}
    assert r.total_series == population.EXPORTER_TOTAL
    assert r.worst_status() == "over"
    assert r.tier("stream").usage == pytest.approx(1.1)
    assert r.tier("stream").memory_bytes == 55 * 3072


def test_status_boundaries() -> None:
    t = B.tier("stream")  # budget 50, warn 0.8 -> warn from 40
    assert [analysis.status_of(n, t) for n in (39, 40, 50, 51)] == ["ok", "warn", "warn", "over"]
    assert analysis.status_of(1, t, ["a cap"]) == "over"


def test_recommendation_is_the_biggest_exact_saving_with_memory_and_disk() -> None:
    rec = analysis.analyze(inv(), B).tier("stream").recommendations[0]
    assert (rec.metric, rec.label, rec.series_before, rec.series_after, rec.saved) == (population.FLINK, "task_attempt", 53, 3, 50)
    assert rec.memory_bytes_saved == 50 * 3072
    assert rec.disk_bytes_per_day_saved == int(50 * (86400 / 30) * 1.5)
    assert rec.unused is None  # no usage source given


def test_recommendation_prefers_an_unused_label_that_saves_at_least_half() -> None:
    idx = usage.UsageIndex()
    idx.add(f"sum by (task_attempt) (rate({population.FLINK}[5m]))", "rule attempts")
    rec = analysis.analyze(inv(), B, idx).tier("stream").recommendations[0]
    # task_attempt (50) is used; task_name (30) is unused and saves >= 25
    assert (rec.label, rec.saved, rec.unused) == ("task_name", 30, True)
    idx.add(f"sum by (task_name) ({population.FLINK})", "dashboard x.json")
    rec = analysis.analyze(inv(), B, idx).tier("stream").recommendations[0]
    assert (rec.label, rec.unused) == ("task_attempt", False)
    assert "used by rule attempts" in rec.reason


def test_caps_make_a_tier_over_and_explosions_are_listed() -> None:
    b = budgets.parse(population.BUDGETS.replace(
        "    match: {metric_prefixes: [flink_, redpanda_, kafka_]}",
        "    match: {metric_prefixes: [flink_, redpanda_, kafka_]}\n    labels: {task_attempt: 20}\n"
        f"    metrics: {{{population.FLINK}: 60}}\n    max_label_values: 2"))
    t = analysis.analyze(inv(), b).tier("stream")
    assert t.problems == [f"{population.FLINK} label task_attempt has 23 values, over its cap of 20"]
    explosions = {(c.metric, c.label, c.distinct_values, c.cap) for c in t.label_explosions}
    assert explosions == {(population.FLINK, "task_attempt", 23, 20), (population.FLINK, "task_name", 3, 2)}


@pytest.mark.parametrize("expr, idents, strings", [
    ('sum by (pod) (rate(x_total{job="a"}[5m]))', {"sum", "by", "pod", "rate", "x_total", "job"}, {"a"}),
    ('label_replace(up, "dst", "$1", "instance", "(.*)")', {"label_replace", "up"}, {"dst", "$1", "instance", "(.*)"}),
    ("a:b:rate5m > 0.5", {"a:b:rate5m"}, set()),
])
def test_promql_tokens(expr: str, idents: set[str], strings: set[str]) -> None:
    assert usage.tokens(expr) == (idents, strings)


def test_usage_sources_rules_dashboards_query_log(tmp_path: Path) -> None:
    idx = usage.UsageIndex()
    idx.add_source("rules", usage.rule_expressions({"groups": [{"rules": [{"name": "R", "query": "sum by (topic) (m)"}]}]}))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dash.json").write_text('{"panels": [{"targets": [{"expr": "count by (dag_id) (n)"}]}]}')
    idx.add_source("dashboards", usage.dashboard_expressions(tmp_path / "d"))
    log = tmp_path / "q.log"
    log.write_text('{"params": {"query": "o{x=\\"1\\"}"}}\nnot json\n{"params": {"query": "{__name__=~\\"p.*\\", y=\\"1\\"}"}}\n')
    idx.add_source("log", usage.query_log_expressions(log))
    assert idx.users("m", "topic") == ["rule R"]
    assert idx.users("n", "dag_id") == ["dashboard dash.json"]
    assert not idx.is_unused("o", "x") and idx.is_unused("m", "x")
    assert not idx.is_unused("anything", "y")  # a __name__ regex may select any metric
    assert idx.is_unused("m", "dag_id")


def test_churn_names_the_short_lived_label() -> None:
    before = inv(now=1000.0)
    after = inv(population.exposition({"a": 20, "b": 10, "c": 30}), now=1060.0)  # 7 new attempts of c
    stats = churn.compute(churn.Snapshot.of(before), after)
    s = stats[population.FLINK]
    assert (s.created, s.gone, s.previous, s.current, s.churn_label, s.new_values) == (7, 0, 53, 60, "task_attempt", 7)
    assert set(stats) == {population.FLINK}
    shrunk = inv(population.exposition({"a": 20, "b": 5, "c": 23}), now=1120.0)
    assert churn.compute(churn.Snapshot.of(after), shrunk)[population.FLINK].gone == 12


def test_growth_projects_time_to_budget() -> None:
    g = growth.fit([(0.0, 10), (3600.0, 20), (7200.0, 30)], budget=50)
    assert g is not None and g.series_per_day == pytest.approx(240.0)
    assert g.seconds_to_budget == pytest.approx(7200.0)   # 20 series left at 10/h
    assert growth.fit([(0.0, 10), (1.0, 10)], 50) is None  # too few points
    assert growth.fit([(0.0, 60), (1.0, 60), (2.0, 60)], 50).seconds_to_budget == 0.0
    assert growth.fit([(0.0, 30), (1.0, 20), (2.0, 10)], 50).seconds_to_budget is None


def test_history_round_trip_and_source_separation(tmp_path: Path) -> None:
    with history.History(tmp_path) as h:
        for i, n in enumerate((10, 20, 30)):
            h.record("src-a", 100.0 * i, n, {"stream": (n, 50)}, {"stream": {"m": n}})
        h.record("src-b", 0.0, 99, {"stream": (99, 50)}, {})
        assert h.tier_points("src-a", "stream", 0) == [(0.0, 10), (100.0, 20), (200.0, 30)]
        assert h.metric_points("src-a", "m", 150) == [(200.0, 30)]
        snap = churn.Snapshot.of(inv())
        h.save_snapshot("src-a", snap)
    with history.History(tmp_path) as h:
        loaded = h.load_snapshot("src-a")
        assert loaded is not None and loaded.series == snap.series and loaded.values == snap.values
        assert h.load_snapshot("src-b") is None


def test_history_prunes_old_evaluations(tmp_path: Path) -> None:
    with history.History(tmp_path, retention_seconds=150) as h:
        for t in (0.0, 100.0, 200.0, 300.0):
            h.record("s", t, 1, {"x": (1, None)}, {})
        assert [t for t, _ in h.tier_points("s", "x", 0)] == [200.0, 300.0]


def test_fix_plan_saves_exactly_on_the_whole_metric() -> None:
    i = inv()
    p = remediation.plan(analysis.analyze(i, B), i)
    assert p.tiers == ["stream", "batch"]
    assert [(a.metric, a.labels, a.saved) for a in p.actions] == [
        (population.FLINK, ("task_attempt",), 50), ("airflow_dag_run_duration", ("dag_id",), 11),
        ("spark_executor_active_tasks", ("app_id",), 8), ("redpanda_kafka_partitions", ("topic",), 1)]
    text = remediation.emit_prometheus_relabel(p)
    assert "saves 70 series" in text and f"regex: {population.FLINK}" in text
    ok_only = remediation.plan(analysis.analyze(i, B, only_tier="oltp"), i)
    assert ok_only.actions == [] and "within its budget" in ok_only.note


def test_emitters_aggregate_for_otel_and_vm() -> None:
    import yaml

    i = inv()
    p = remediation.plan(analysis.analyze(i, B, only_tier="stream"), i)
    otel = yaml.safe_load(remediation.emit_otel_collector(p))
    t0 = otel["processors"]["metricstransform/bcgov"]["transforms"][0]
    assert t0["include"] == "^flink_taskmanager_job_task_records_in(_total)?$"
    assert t0["operations"] == [{"action": "aggregate_labels", "label_set": ["task_name"], "aggregation_type": "sum"}]
    vm = yaml.safe_load(remediation.emit_vm_stream_aggr(p))
    assert vm[0] == {"match": f'{{__name__="{population.FLINK}"}}', "interval": "1m", "without": ["task_attempt"],
                     "outputs": ["total"], "keep_metric_names": True}
    assert vm[1]["outputs"] == ["max"]  # redpanda_kafka_partitions is a gauge


def test_merged_inventories_unite_series() -> None:
    a = Inventory({"m": MetricInventory.of("m", [label_set({"x": "1"}), label_set({"x": "2"})])}, "a", 1.0)
    b = Inventory({"m": MetricInventory.of("m", [label_set({"x": "2"}), label_set({"x": "3"})])}, "b", 2.0)
    assert a.merged(b).metrics["m"].count == 3
