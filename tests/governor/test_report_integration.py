"""`bcgov budget report` against a real Prometheus scraping the known population, and against the
exporter directly: exact counts, exact savings, classification, statuses and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import population
import pytest

from governor.promapi import PrometheusSource
from tests import servers

pytestmark = pytest.mark.integration
# What the fixture's Prometheus holds: the exporter's 84, 5 synthetic scrape series, 2 recorded.
SCRAPED_TOTAL = population.EXPORTER_TOTAL + population.SYNTHETIC_PER_TARGET + population.RECORDED_SERIES  # 91
UNCLASSIFIED = population.EXPORTER_UNCLASSIFIED + population.SYNTHETIC_PER_TARGET + population.RECORDED_SERIES


def report_json(cli, runner, args: list[str]) -> tuple[int, dict]:
    result = runner.invoke(cli, ["budget", "report", "--format", "json", "--no-history", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def test_inventory_from_prometheus_is_exact(prometheus: servers.PrometheusServer) -> None:
    src = PrometheusSource(prometheus.url)
    inv = src.collect()
    src.close()
    assert inv.total_series == SCRAPED_TOTAL
    flink = inv.metrics[population.FLINK]
    assert flink.count == 53 and flink.type == "counter"
    assert flink.label_names() == ["instance", "job", "task_attempt", "task_name"]
    assert flink.distinct_values("task_attempt") == 23
    assert flink.savings(["task_attempt"]) == 50
    assert inv.metrics["up"].count == 1
    assert inv.head is not None and inv.head["numSeries"] == SCRAPED_TOTAL


def test_report_json_tiers_statuses_savings_and_usage(cli, runner, prometheus, budgets_file: Path) -> None:
    code, rep = report_json(cli, runner, ["--prometheus", prometheus.url, "--budgets", str(budgets_file)])
    assert code == 3
    assert rep["schema"] == "bcgov.budget-report/v1" and rep["status"] == "over"
    assert rep["total_series"] == SCRAPED_TOTAL
    tiers = {t["name"]: (t["series"], t["budget"], t["status"]) for t in rep["tiers"]}
    assert tiers == {"stream": (55, 50, "over"), "oltp": (4, 100, "ok"), "batch": (22, 40, "warn"),
                     "unclassified": (UNCLASSIFIED, None, "unbudgeted")}
    stream = next(t for t in rep["tiers"] if t["name"] == "stream")
    recs = [(r["metric"], r["label"], r["series_before"], r["series_after"], r["saved"], r["unused"]) for r in stream["recommendations"]]
    # `topic` is named by the recording rule loaded into Prometheus, so it is marked used.
    assert recs == [(population.FLINK, "task_attempt", 53, 3, 50, True), ("redpanda_kafka_partitions", "topic", 2, 1, 1, False)]
    assert stream["projected_savings"] == 51
    assert "rule topic:redpanda_kafka_partitions:sum" in stream["recommendations"][1]["reason"]
    assert stream["top_metrics"][0]["labels"][0] == {
        "label": "task_attempt", "distinct_values": 23, "cap": 1000, "over_cap": False, "unused": True,
        "top_values": [{"value": v, "series": 3} for v in ("0", "1", "2", "3", "4")]}


@pytest.mark.parametrize("args, code", [
    (["--tier", "oltp"], 0),
    (["--tier", "batch"], 0),
    (["--tier", "batch", "--fail-on", "warn"], 3),
    (["--tier", "stream"], 3),
    (["--tier", "nosuch"], 2),
])
def test_exit_codes(cli, runner, prometheus, budgets_file: Path, args: list[str], code: int) -> None:
    result = runner.invoke(cli, ["budget", "report", "--prometheus", prometheus.url, "--budgets", str(budgets_file), "--no-history", *args])
    assert result.exit_code == code, result.output


def test_table_and_markdown(cli, runner, prometheus, budgets_file: Path) -> None:
    base = ["budget", "report", "--prometheus", prometheus.url, "--budgets", str(budgets_file), "--no-history"]
    table = runner.invoke(cli, base).stdout
    assert "Series budget per tier" in table and "│ stream       │     55 │     50 │ 110.0% │ over" in table
    md = runner.invoke(cli, [*base, "--format", "markdown"]).stdout
    assert md.startswith("### bcgov budget report: over\n")
    assert "| stream | 55 | 50 | 110.0% | over :red_circle: | 165.0 KiB | - |" in md
    assert f"- drop `task_attempt` from `{population.FLINK}`: 53 → 3 series, saves **50**" in md


def test_prometheus_down_exits_4_with_one_line(cli, runner, budgets_file: Path) -> None:
    url = f"http://127.0.0.1:{servers.free_port()}"
    result = runner.invoke(cli, ["budget", "report", "--prometheus", url, "--budgets", str(budgets_file), "--retries", "0", "--no-history"])
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.output == (f"bcgov: error: cannot reach Prometheus at {url}/api/v1/label/__name__/values: connection refused; "
                             "check that it is running and the URL is right, or pass --prometheus URL\n")


def test_not_a_prometheus_api_exits_4(cli, runner, exporter, budgets_file: Path) -> None:
    result = runner.invoke(cli, ["budget", "report", "--prometheus", f"http://{exporter.target}", "--budgets", str(budgets_file), "--no-history"])
    assert result.exit_code == 4
    assert len(result.output.splitlines()) == 1 and "did not answer JSON" in result.output


def test_scrape_source_judges_an_exporter_directly(cli, runner, exporter, budgets_file: Path) -> None:
    code, rep = report_json(cli, runner, ["--scrape", exporter.url, "--budgets", str(budgets_file)])
    assert code == 3
    assert rep["total_series"] == population.EXPORTER_TOTAL
    assert {t["name"]: t["series"] for t in rep["tiers"]} == {**population.EXPECTED, "unclassified": population.EXPORTER_UNCLASSIFIED}


def test_scrape_openmetrics(cli, runner, budgets_file: Path) -> None:
    body = ("# TYPE flink_records counter\n" + "".join(f'flink_records_total{{attempt="{i}"}} 1\n' for i in range(7))
            + "# EOF\n")
    with servers.serve_exposition(body, "application/openmetrics-text; version=1.0.0; charset=utf-8") as ex:
        code, rep = report_json(cli, runner, ["--scrape", ex.url, "--budgets", str(budgets_file), "--tier", "stream"])
    assert code == 0
    assert rep["tiers"][0]["top_metrics"][0]["name"] == "flink_records_total"
    assert rep["tiers"][0]["series"] == 7


def test_both_sources_is_a_usage_error(cli, runner) -> None:
    result = runner.invoke(cli, ["budget", "report", "--prometheus", "http://x", "--scrape", "http://y"])
    assert result.exit_code == 2 and "either --prometheus or --scrape" in result.output


def test_default_source_is_the_local_agent(cli, runner, budgets_file: Path) -> None:
    import socket

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 9464)) == 0:
            pytest.skip("something listens on 127.0.0.1:9464 (a running agent); the unreachable path cannot be shown")
    result = runner.invoke(cli, ["budget", "report", "--budgets", str(budgets_file), "--retries", "0", "--no-history"])
    assert result.exit_code == 4
    assert result.output == ("bcgov: error: cannot reach the local bcgov agent at http://127.0.0.1:9464/metrics: connection refused; "
                             "start it with 'bcgov agent run', or pass --prometheus URL or --scrape URL\n")


def test_history_gives_churn_and_trend(cli, runner, budgets_file: Path, tmp_path: Path) -> None:
    """Three reports against an exporter whose task attempts keep coming: churn names the label."""
    state = tmp_path / "state"
    args = ["budget", "report", "--format", "json", "--budgets", str(budgets_file), "--state-dir", str(state), "--tier", "stream"]
    with servers.serve_exposition(population.exposition()) as ex:
        first = runner.invoke(cli, [*args, "--scrape", ex.url])
        ex.set_body(population.exposition({"a": 20, "b": 10, "c": 30}))
        second = json.loads(runner.invoke(cli, [*args, "--scrape", ex.url]).stdout)
        ex.set_body(population.exposition({"a": 20, "b": 10, "c": 37}))
        third = json.loads(runner.invoke(cli, [*args, "--scrape", ex.url]).stdout)
    assert json.loads(first.stdout)["tiers"][0]["top_metrics"][0]["churn"] is None
    c = second["tiers"][0]["top_metrics"][0]["churn"]
    assert (c["created"], c["gone"], c["churn_label"], c["new_values"]) == (7, 0, "task_attempt", 7)
    g = third["tiers"][0]["growth"]
    assert g["points"] == 3 and g["series_per_day"] > 0 and g["seconds_to_budget"] == 0.0  # 69 > 50: already over


def test_batched_and_bounded_inventory(prometheus: servers.PrometheusServer) -> None:
    """Several names per request and requests in parallel give the same exact counts; a metric over
    the per-metric bound keeps only its count and is marked truncated; an inventory over the total
    bound is refused naming the flag."""
    from governor.errors import InventoryTooLarge
    from governor.promapi import Limits

    whole = PrometheusSource(prometheus.url, limits=Limits(names_per_request=1000, parallel=1))
    reference = whole.collect()
    whole.close()
    seen: list[tuple[int, int]] = []
    src = PrometheusSource(prometheus.url, limits=Limits(names_per_request=2, parallel=3, max_series_per_metric=20))
    inv = src.collect(progress=lambda done, total: seen.append((done, total)))
    src.close()
    assert inv.total_series == SCRAPED_TOTAL == reference.total_series
    assert inv.truncated_metrics == [population.FLINK] and inv.metrics[population.FLINK].count == 53
    assert inv.metrics["airflow_dag_run_duration"].count == 12
    for name, m in reference.metrics.items():
        if name != population.FLINK:
            assert inv.metrics[name].series == m.series, name
    assert len(seen) > 3 and seen[-1] == (len(seen), len(seen))
    with pytest.raises(InventoryTooLarge, match="--max-series"):
        PrometheusSource(prometheus.url, limits=Limits(max_series_total=50)).collect()
