"""Two-phase inventories against real servers: Debian's VictoriaMetrics and Prometheus, and a Mimir
stand-in (Mimir cannot run here) serving Mimir's cardinality API wire format in front of a real
VictoriaMetrics.

The population (scale_population) has hand-worked counts and a hand-worked split into metrics the
governor must enumerate and metrics it may leave to the backend's statistics. Every count in the
report must equal the truth, the exact ones must be exactly the enumerated ones, and the savings
shown must be exact.
"""

from __future__ import annotations

import http.server
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import scale_population as pop

from tests import servers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.VictoriaMetricsServer]:
    with servers.start_victoriametrics(tmp_path_factory.mktemp("vm")) as v:
        v.import_prometheus(pop.import_lines(int(time.time() * 1000)))
        v.wait_for_count('{__name__=~".+"}', pop.TOTAL)
        yield v


@pytest.fixture
def scale_budgets(tmp_path: Path) -> Path:
    p = tmp_path / "budgets.yaml"
    p.write_text(pop.BUDGETS)
    return p


def report(cli, runner, url: str, budgets: Path, *extra: str) -> dict[str, Any]:
    r = runner.invoke(cli, ["budget", "report", "--prometheus", url, "--budgets", str(budgets), "--no-history", "--no-rules",
                            "--format", "json", "--enumerate-below", "0", *extra])
    assert r.exit_code == 3, r.output  # stream is over budget
    return json.loads(r.stdout)


def tiers(rep: dict[str, Any]) -> dict[str, int]:
    return {t["name"]: t["series"] for t in rep["tiers"] if t["series"]}


def test_victoriametrics_statistics_then_exact_enumeration(cli, runner, vm, scale_budgets: Path) -> None:
    # What the real server's statistics say (checked here, not assumed): every metric, by day.
    day = time.strftime("%Y-%m-%d", time.gmtime())
    stats = vm.api("status/tsdb", topN="1000", date=day)
    assert {e["name"]: e["value"] for e in stats["seriesCountByMetricName"]} == pop.COUNTS

    rep = report(cli, runner, vm.url, scale_budgets)
    p = rep["phases"]
    assert p["backend"] == "victoriametrics" and p["statistics"].startswith(f"VictoriaMetrics /api/v1/status/tsdb (date {day}")
    assert set(rep["estimated_metrics"]) == pop.ESTIMATED
    assert p["enumerated_metrics"] == len(pop.ENUMERATED)
    assert p["enumerated_series"] == sum(pop.COUNTS[n] for n in pop.ENUMERATED) == 303
    assert p["estimated_series"] == sum(pop.COUNTS[n] for n in pop.ESTIMATED) == 128
    assert tiers(rep) == pop.TIERS and rep["total_series"] == pop.TOTAL
    by_tier = {t["name"]: t for t in rep["tiers"]}
    # batch holds only spark_tasks (at 60 of its cap 70: at risk, enumerated): exact; the others hold estimates.
    assert by_tier["batch"]["series_exact"] and not by_tier["stream"]["series_exact"] and not by_tier["oltp"]["series_exact"]
    assert by_tier["stream"]["estimated_series"] == 30 + 36
    metrics = {m["name"]: m for t in rep["tiers"] for m in t["top_metrics"]}
    assert metrics["redpanda_partition_bytes"]["exact"] and metrics["redpanda_partition_bytes"]["series"] == 160
    assert not metrics[f"{pop.HIST}_bucket"]["exact"] and metrics[f"{pop.HIST}_bucket"]["series"] == 20
    # Savings are shown for enumerated units only, and are exact.
    recs = {(r["metric"], r["label"]): (r["series_before"], r["series_after"]) for t in rep["tiers"] for r in t["recommendations"]}
    assert recs[("redpanda_partition_bytes", "partition")] == (160, 4)
    assert recs[("pg_conn_by_client", "client")] == (80, 1)
    assert all(m in pop.ENUMERATED for m, _ in recs)
    explosions = {(c["metric"], c["label"], c["saved"]) for t in rep["tiers"] for c in t["label_explosions"]}
    assert explosions == {("pg_conn_by_client", "client", 79)}

    # The same report enumerating everything: the same counts, all exact, and it says why.
    whole = report(cli, runner, vm.url, scale_budgets, "--backend", "enumerate")
    assert tiers(whole) == pop.TIERS and whole["estimated_metrics"] == []
    assert whole["phases"]["note"] == "--backend enumerate: every series enumerated"
    assert {(r["metric"], r["label"], r["saved"]) for t in whole["tiers"] for r in t["recommendations"]} >= \
        {("redpanda_partition_bytes", "partition", 156), ("pg_conn_by_client", "client", 79)}


def test_table_marks_estimates_and_names_their_source(cli, runner, vm, scale_budgets: Path) -> None:
    r = runner.invoke(cli, ["budget", "report", "--prometheus", vm.url, "--budgets", str(scale_budgets), "--no-history",
                            "--no-rules", "--enumerate-below", "0"])
    assert r.exit_code == 3, r.output
    assert "│ stream       │   ~229 │    200 │" in r.stdout and "│ batch        │     60 │    100 │" in r.stdout
    assert f": ~{pop.TOTAL} series\n" in r.stdout and "inventory: phase 1: VictoriaMetrics /api/v1/status/tsdb" in r.stdout
    assert ("inventory: ~ marks estimates: 31 metrics (~128 series) counted by VictoriaMetrics /api/v1/status/tsdb" in r.stdout)
    assert "drop partition from redpanda_partition_bytes: 160 -> 4 series, saves 156" in r.stdout


def test_small_backend_is_enumerated_whole(cli, runner, vm, scale_budgets: Path) -> None:
    r = runner.invoke(cli, ["budget", "report", "--prometheus", vm.url, "--budgets", str(scale_budgets), "--no-history",
                            "--no-rules", "--format", "json"])
    rep = json.loads(r.stdout)
    assert rep["estimated_metrics"] == [] and tiers(rep) == pop.TIERS
    assert rep["phases"]["note"] == (f"{pop.TOTAL} series by VictoriaMetrics /api/v1/status/tsdb (date "
                                     f"{time.strftime('%Y-%m-%d', time.gmtime())}, topN 100000), fewer than 200000: "
                                     "every series enumerated (exact)")


def test_prometheus_top10_statistics(cli, runner, scale_budgets: Path, tmp_path: Path) -> None:
    # Every metric in the report's top lists (the at-risk rule needs one unit here either way).
    scale_budgets.write_text(pop.BUDGETS.replace("top_n: 3", "top_n: 50"))
    with servers.serve_exposition(pop.exposition()) as ex, \
            servers.start_prometheus(servers.scrape_config(ex.target, job="exporter"), tmp_path) as prom:
        prom.wait_for_first_scrape("exporter")
        listed = {e["name"]: e["value"] for e in prom.api("status/tsdb")["seriesCountByMetricName"]}
        assert len(listed) == 10  # 2.42: the top 10 only
        rep = report(cli, runner, prom.url, scale_budgets)
    p = rep["phases"]
    assert p["backend"] == "prometheus" and p["statistics"] == "Prometheus /api/v1/status/tsdb (top 10)"
    # Only listed metrics can be estimated; of those, the ones at risk or exploding are enumerated.
    estimated = set(rep["estimated_metrics"])
    assert estimated == set(listed) - pop.ENUMERATED
    assert {f"{pop.HIST}_bucket", f"{pop.HIST}_count", f"{pop.HIST}_sum"} <= estimated <= pop.ESTIMATED
    # The unlisted ones that need no label analysis are counted exactly in PromQL, not fetched:
    # Prometheus' own up and scrape_* (no tier prefix, job "exporter" is no tier's) among them.
    synthetic = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                 "scrape_series_added"}
    counted = (pop.ESTIMATED | synthetic) - estimated
    assert (p["counted_metrics"], p["counted_series"]) == (len(counted), sum(pop.COUNTS.get(n, 1) for n in counted))
    shown = {m["name"]: m for t in rep["tiers"] for m in t["top_metrics"]}
    assert counted <= set(shown)
    for name in counted:  # exact, and said how
        assert shown[name]["exact"] and shown[name]["counted_by"] == "PromQL count by (__name__) at the evaluation time"
        assert shown[name]["series"] == pop.COUNTS.get(name, 1) and shown[name]["labels"] == []
    assert all(shown[n]["estimated_from"] == p["statistics"] and not shown[n]["exact"] for n in estimated)
    assert (p["enumerated_metrics"], p["enumerated_series"]) == (len(pop.ENUMERATED), 303)
    assert tiers(rep) == {**pop.TIERS, "unclassified": 2 + len(synthetic)}
    by_tier = {t["name"]: t for t in rep["tiers"]}
    assert by_tier["stream"]["estimated_series"] == 30 + sum(pop.COUNTS[n] for n in estimated if n.startswith("kafka_"))
    recs = {(r["metric"], r["label"]): r["saved"] for t in rep["tiers"] for r in t["recommendations"]}
    assert recs[("redpanda_partition_bytes", "partition")] == 156 and recs[("pg_conn_by_client", "client")] == 79


# ------------------------------------------------------------------------------- Mimir stand-in


def mimir_standin(backend_url: str, tenant: str, statistics: bool = True) -> type[http.server.BaseHTTPRequestHandler]:
    """A STAND-IN for Mimir (which cannot run here): the Prometheus query API is passed through to
    a real VictoriaMetrics; `/api/v1/cardinality/label_names` and `/label_values` answer in Mimir's
    wire format (Mimir HTTP API reference: limit 0..500, label_names[] required, no envelope),
    computed from the real server's series; `/api/v1/status/tsdb` is absent, as in Mimir. Every
    request needs the tenant header, as Mimir's. With `statistics` False the cardinality API is
    absent too (a backend without any statistics API)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve()

        def do_POST(self) -> None:  # noqa: N802
            self._serve()

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> None:
            if self.headers.get("X-Scope-OrgID") != tenant:
                return self._send(401, b"no org id\n", "text/plain")
            url = urllib.parse.urlsplit(self.path)
            params = urllib.parse.parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if url.path.startswith("/api/v1/cardinality/") and statistics:
                return self._send(200, json.dumps(cardinality(url.path.rsplit("/", 1)[1], params)).encode())
            if url.path.startswith("/api/v1/cardinality/") or url.path == "/api/v1/status/tsdb":
                return self._send(404, b"404 page not found\n", "text/plain")
            r = requests.request(self.command, backend_url + self.path, data=body,
                                 headers={"Content-Type": self.headers.get("Content-Type", "")}, timeout=30)
            self._send(r.status_code, r.content, r.headers.get("Content-Type", "application/json"))

        def log_message(self, *args: Any) -> None:
            pass

    def series() -> list[dict[str, str]]:
        r = requests.get(f"{backend_url}/api/v1/series", params={"match[]": '{__name__=~".+"}'}, timeout=30)
        return list(r.json()["data"])

    def cardinality(kind: str, params: dict[str, list[str]]) -> dict[str, Any]:
        limit = min(500, int(params.get("limit", ["20"])[0]))
        all_series = series()
        if kind == "label_names":
            values: dict[str, set[str]] = {}
            for s in all_series:
                for k, v in s.items():
                    values.setdefault(k, set()).add(v)
            items = sorted(({"label_name": k, "label_values_count": len(v)} for k, v in values.items()),
                           key=lambda i: (-i["label_values_count"], i["label_name"]))
            return {"label_values_count_total": sum(len(v) for v in values.values()), "label_names_count": len(values),
                    "cardinality": items[:limit]}
        labels = []
        for name in params["label_names[]"]:
            counts: dict[str, int] = {}
            for s in all_series:
                if name in s:
                    counts[s[name]] = counts.get(s[name], 0) + 1
            card = sorted(({"label_value": v, "series_count": n} for v, n in counts.items()),
                          key=lambda c: (-c["series_count"], c["label_value"]))
            labels.append({"label_name": name, "label_values_count": len(counts), "series_count": sum(counts.values()),
                           "cardinality": card[:limit]})
        return {"series_count_total": len(all_series), "labels": labels}

    return Handler


def test_mimir_standin_cardinality_api(cli, runner, vm, scale_budgets: Path) -> None:
    with servers.serve_http(mimir_standin(vm.url, "team-a"), "mimir-standin") as port:
        url = f"http://127.0.0.1:{port}"
        rep = report(cli, runner, url, scale_budgets, "--header", "X-Scope-OrgID:team-a")
        named = report(cli, runner, url, scale_budgets, "--header", "X-Scope-OrgID:team-a", "--backend", "mimir")
    for r in (rep, named):
        assert r["phases"]["backend"] == "mimir"
        assert r["phases"]["statistics"].startswith("Mimir /api/v1/cardinality/label_values")
        assert set(r["estimated_metrics"]) == pop.ESTIMATED and tiers(r) == pop.TIERS
        recs = {(x["metric"], x["label"]): x["saved"] for t in r["tiers"] for x in t["recommendations"]}
        assert recs[("redpanda_partition_bytes", "partition")] == 156


def test_backend_without_statistics_falls_back_with_a_message(cli, runner, vm, scale_budgets: Path) -> None:
    with servers.serve_http(mimir_standin(vm.url, "t", statistics=False), "plain-standin") as port:
        url = f"http://127.0.0.1:{port}"
        rep = report(cli, runner, url, scale_budgets, "--header", "X-Scope-OrgID:t")
        table = runner.invoke(cli, ["budget", "report", "--prometheus", url, "--budgets", str(scale_budgets), "--no-history",
                                    "--no-rules", "--enumerate-below", "0", "--header", "X-Scope-OrgID:t"])
        named = runner.invoke(cli, ["budget", "report", "--prometheus", url, "--budgets", str(scale_budgets), "--no-history",
                                    "--no-rules", "--enumerate-below", "0", "--header", "X-Scope-OrgID:t", "--backend", "victoriametrics"])
    assert rep["phases"]["backend"] is None and rep["estimated_metrics"] == [] and tiers(rep) == pop.TIERS
    msg = (f"prometheus {url} offers no cardinality statistics API (Prometheus or VictoriaMetrics /api/v1/status/tsdb, "
           "Mimir /api/v1/cardinality): every series enumerated")
    assert rep["phases"]["note"] == msg
    assert f"inventory: {msg}" in " ".join(table.stdout.split())
    # Named, but not there: one line naming the backend and the way out, exit 4.
    assert named.exit_code == 4 and named.stdout == ""
    assert named.output.startswith("bcgov: error: --backend victoriametrics: ") and named.output.endswith(
        "pass the right --backend, or --backend enumerate\n") and named.output.count("\n") == 1


def test_governor_run_uses_both_phases_and_exports_them(vm) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from governor import budgets, service
    from governor.promapi import Limits, PrometheusSource

    registry = CollectorRegistry()
    src = PrometheusSource(vm.url, limits=Limits(enumerate_below=0))
    gov = service.Governor(src, budgets.parse(pop.BUDGETS), interval_seconds=5)
    gov.register(registry)
    try:
        assert gov.evaluate_once() is True
    finally:
        src.close()
    s = {(x.name, tuple(sorted(x.labels.items()))): x.value
         for fam in text_string_to_metric_families(generate_latest(registry).decode()) for x in fam.samples}
    assert s[("bcgov_governor_inventory_series", (("counted", "enumerated"),))] == 303
    assert s[("bcgov_governor_inventory_series", (("counted", "estimated"),))] == 128
    assert s[("bcgov_governor_inventory_metrics", (("counted", "enumerated"),))] == len(pop.ENUMERATED)
    assert s[("bcgov_governor_inventory_metrics", (("counted", "estimated"),))] == len(pop.ESTIMATED)
    assert s[("bcgov_governor_inventory_series", (("counted", "count_query"),))] == 0  # VictoriaMetrics lists every metric
    phases = {k[1][0][1]: v for k, v in s.items() if k[0] == "bcgov_governor_inventory_phase_duration_seconds"}
    assert set(phases) == {"statistics", "enumeration"} and all(v > 0 for v in phases.values())
    assert phases["statistics"] + phases["enumeration"] <= s[("bcgov_governor_evaluation_duration_seconds", ())]
    assert {t: s[("bcgov_governor_tier_series", (("tier", t),))] for t in pop.TIERS} == pop.TIERS


def test_big_metric_fetched_in_shards_is_whole(tmp_path: Path) -> None:
    """A metric the statistics call big is fetched in shards by its most varied label; the shards
    together are every series exactly once, those without that label included."""
    from governor.promapi import Limits, PrometheusSource

    now = int(time.time() * 1000)
    lines = [f'shard_test{{pod="p{i}",zone="z{i % 3}"}} 1 {now}\n' for i in range(40)]
    lines += [f'shard_test{{zone="z{z}"}} 1 {now}\n' for z in range(3)] + [f"shard_test 1 {now}\n"]
    with servers.start_victoriametrics(tmp_path) as v:
        v.import_prometheus("".join(lines))
        v.wait_for_count("shard_test", 44)
        src = PrometheusSource(v.url, limits=Limits(parallel=3))
        try:
            at = time.time()
            selectors = src._shards("shard_test", at)
            sharded = src.enumerate(["shard_test"], at, {}, sizes={"shard_test": 10**6})["shard_test"]
            whole = src.enumerate(["shard_test"], at, {})["shard_test"]
        finally:
            src.close()
    assert len(selectors) == 4 and all('pod=' in s for s in selectors)  # 3 groups of pod values + pod=""
    assert sharded.count == whole.count == 44 and sharded.series == whole.series


def test_label_classified_metrics_are_enumerated_and_split(cli, runner, tmp_path: Path) -> None:
    """A metric without a tier prefix that carries a configured job is enumerated and split by its
    series' labels; one that carries none is unclassified whole and left to the statistics."""
    budgets = tmp_path / "b.yaml"
    budgets.write_text("tiers:\n  web:\n    max_series: 100\n    match: {jobs: [web]}\n")
    now = int(time.time() * 1000)
    lines = [f'http_requests_total{{job="web",code="{c}"}} 1 {now}\n' for c in (200, 404, 500)]
    lines += [f'http_requests_total{{job="other",code="{c}"}} 1 {now}\n' for c in (200, 503)]
    lines += [f'go_goroutines{{job="other",instance="i{i}"}} 1 {now}\n' for i in range(7)]
    with servers.start_victoriametrics(tmp_path) as v:
        v.import_prometheus("".join(lines))
        v.wait_for_count('{__name__=~".+"}', 12)
        r = runner.invoke(cli, ["budget", "report", "--prometheus", v.url, "--budgets", str(budgets), "--no-history", "--no-rules",
                                "--format", "json", "--enumerate-below", "0"])
    rep = json.loads(r.stdout)
    assert rep["phases"]["backend"] == "victoriametrics" and rep["estimated_metrics"] == ["go_goroutines"]
    assert tiers(rep) == {"web": 3, "unclassified": 2 + 7}
    by_tier = {t["name"]: t for t in rep["tiers"]}
    assert by_tier["web"]["series_exact"] and by_tier["unclassified"]["estimated_series"] == 7
