"""Faults 1-9 of issue 12, each with the small input that showed it: how the governor reads a
target and what it says when the input is bad. The targets are local stand-in exporters
(tests/servers.py) serving exactly the bytes under test; the real-exporter corpus and the real
Prometheus oracle are in test_corpus_integration.py."""

from __future__ import annotations

import http.server
import json
from pathlib import Path
from typing import Any

import pytest

from governor.scrape import parse_exposition
from tests import servers

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def report(cli, runner, args: list[str]) -> Any:
    return runner.invoke(cli, ["budget", "report", "--no-history", *args])


def report_json(cli, runner, args: list[str]) -> tuple[int, dict]:
    result = report(cli, runner, ["--format", "json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def one_error_line(result: Any, *needles: str) -> None:
    """Exactly one line on stderr, no traceback, naming each needle."""
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bcgov: error: "), result.stderr
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], lines[0]


# 1 -------------------------------------------------------------------------------------------------

def test_counter_without_total_keeps_its_stored_name() -> None:
    inv = parse_exposition('# TYPE pg_stat_database_xact_commit counter\npg_stat_database_xact_commit{datname="a"} 10\n'
                           'pg_stat_database_xact_commit{datname="b"} 3\n', "text/plain", "t", 0)
    assert list(inv.metrics) == ["pg_stat_database_xact_commit"]
    assert inv.metrics["pg_stat_database_xact_commit"].type == "counter"


def test_counter_foo_and_gauge_foo_total_stay_two_metrics() -> None:
    inv = parse_exposition("# TYPE foo counter\nfoo 1\n# TYPE foo_total gauge\nfoo_total 2\n", "text/plain", "t", 0)
    assert {n: (m.count, m.type) for n, m in inv.metrics.items()} == {"foo": (1, "counter"), "foo_total": (1, "gauge")}


def test_fix_regex_names_the_stored_counter(cli, runner, tmp_path: Path) -> None:
    budgets = tmp_path / "b.yaml"
    budgets.write_text("tiers:\n  oltp: {max_series: 5, match: {metric_prefixes: [pg_]}}\n")
    body = "# TYPE pg_xact counter\n" + "".join(f'pg_xact{{datname="d{i % 3}",pid="{i}"}} 1\n' for i in range(9))
    with servers.serve_exposition(body) as ex:
        out = runner.invoke(cli, ["budget", "fix", "--scrape", ex.url, "--budgets", str(budgets), "--no-history"]).stdout
    assert "regex: pg_xact\n" in out and "pg_xact_total" not in out


# 2 -------------------------------------------------------------------------------------------------

def test_same_page_on_two_ports_counts_twice_with_own_instance(cli, runner, budgets_file: Path) -> None:
    body = '# TYPE custom_thing gauge\ncustom_thing{x="1"} 1\ncustom_thing{x="2"} 1\ncustom_thing{job="j"} 1\n'
    with servers.serve_exposition(body) as a, servers.serve_exposition(body) as b:
        code, rep = report_json(cli, runner, ["--scrape", a.url, "--scrape", b.url, "--scrape-job", "node",
                                              "--budgets", str(budgets_file)])
    assert rep["total_series"] == 6
    top = rep["tiers"][-1]["top_metrics"][0]
    labels = {ls["label"]: ls for ls in top["labels"]}
    assert labels["instance"]["distinct_values"] == 2
    assert {v["value"] for v in labels["instance"]["top_values"]} == {a.target, b.target}
    assert [v["value"] for v in labels["job"]["top_values"]] == ["node"]
    # The page's own `job` label is kept as Prometheus keeps it (honor_labels: false).
    assert [v["value"] for v in labels["exported_job"]["top_values"]] == ["j"]


# 3 -------------------------------------------------------------------------------------------------

def test_max_series_refuses_a_big_scrape_target(cli, runner, budgets_file: Path) -> None:
    body = "# TYPE big gauge\n" + "".join(f'big{{i="{i}"}} 1\n' for i in range(20_000))
    with servers.serve_exposition(body) as ex:
        result = report(cli, runner, ["--scrape", ex.url, "--max-series", "100", "--budgets", str(budgets_file)])
        assert result.exit_code == 2
        one_error_line(result, "20000 series", "--max-series 100")
        code, rep = report_json(cli, runner, ["--scrape", ex.url, "--max-series-per-metric", "100", "--budgets", str(budgets_file)])
    assert rep["truncated_metrics"] == ["big"]


def test_max_series_holds_across_targets(cli, runner, budgets_file: Path) -> None:
    body = "# TYPE big gauge\n" + "".join(f'big{{i="{i}"}} 1\n' for i in range(60))
    with servers.serve_exposition(body) as a, servers.serve_exposition(body) as b:
        result = report(cli, runner, ["--scrape", a.url, "--scrape", b.url, "--max-series", "100", "--budgets", str(budgets_file)])
    assert result.exit_code == 2
    one_error_line(result, "--max-series 100")


# 4 -------------------------------------------------------------------------------------------------

def test_utf8_without_charset_is_utf8(cli, runner, budgets_file: Path) -> None:
    with servers.serve_exposition('# TYPE city_up gauge\ncity_up{city="Zürich"} 1\n', "text/plain; version=0.0.4") as ex:
        code, rep = report_json(cli, runner, ["--scrape", ex.url, "--budgets", str(budgets_file)])
    values = [v["value"] for t in rep["tiers"] for m in t["top_metrics"] for ls in m["labels"] if ls["label"] == "city"
              for v in ls["top_values"]]
    assert values == ["Zürich"]


def test_label_value_that_is_not_utf8_is_refused_like_prometheus(cli, runner, budgets_file: Path) -> None:
    class Latin1(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = '# TYPE city_up gauge\ncity_up{city="Zürich"} 1\n'.encode("latin-1")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    with servers.serve_http(Latin1, "latin1") as port:
        result = report(cli, runner, ["--scrape", f"http://127.0.0.1:{port}/metrics", "--budgets", str(budgets_file)])
    assert result.exit_code == 4
    one_error_line(result, "line 2", "not valid UTF-8")


# 5 -------------------------------------------------------------------------------------------------

def test_openmetrics_with_negative_histogram_sum_is_accepted(cli, runner, budgets_file: Path) -> None:
    body = ("# TYPE rpc_seconds histogram\n"
            'rpc_seconds_bucket{le="-0.5"} 1\nrpc_seconds_bucket{le="+Inf"} 2\nrpc_seconds_sum -0.7\nrpc_seconds_count 2\n'
            "rpc_seconds_created 1.7e+09\n# EOF\n")
    with servers.serve_exposition(body, OM) as ex:
        code, rep = report_json(cli, runner, ["--scrape", ex.url, "--budgets", str(budgets_file)])
    assert code == 0
    assert rep["total_series"] == 5


def test_openmetrics_without_eof_is_refused_like_prometheus(cli, runner, budgets_file: Path) -> None:
    with servers.serve_exposition("# TYPE a gauge\na 1\n", OM) as ex:
        result = report(cli, runner, ["--scrape", ex.url, "--budgets", str(budgets_file)])
    assert result.exit_code == 4
    one_error_line(result, "# EOF")


# 6 -------------------------------------------------------------------------------------------------

def test_ftp_url_is_one_line_exit_2(cli, runner, budgets_file: Path) -> None:
    result = report(cli, runner, ["--scrape", "ftp://host/metrics", "--budgets", str(budgets_file)])
    assert result.exit_code == 2
    one_error_line(result, "ftp://host/metrics", "http")


def test_not_a_url_is_one_line_exit_2(cli, runner, budgets_file: Path) -> None:
    result = report(cli, runner, ["--scrape", "not a url", "--budgets", str(budgets_file)])
    assert result.exit_code == 2
    one_error_line(result, "not a url")


def test_prometheus_flag_that_is_not_a_url_is_one_line_exit_2(cli, runner, budgets_file: Path) -> None:
    result = report(cli, runner, ["--prometheus", "localhost:9090", "--budgets", str(budgets_file)])
    assert result.exit_code == 2
    one_error_line(result, "localhost:9090", "http://host:9090")


def test_budgets_file_not_utf8_is_one_line_exit_2(cli, runner, tmp_path: Path) -> None:
    bad = tmp_path / "budgets.yaml"
    bad.write_bytes("tiers:\n  oltp: {max_series: 5, match: {metric_prefixes: [pg_]}}  # Zürich\n".encode("latin-1"))
    result = report(cli, runner, ["--scrape", "http://127.0.0.1:1/metrics", "--budgets", str(bad)])
    assert result.exit_code == 2
    one_error_line(result, f"{bad}:2:", "UTF-8")


def test_secret_file_not_utf8_is_one_line_exit_2(cli, runner, budgets_file: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfehunter2")
    result = report(cli, runner, ["--scrape", "http://127.0.0.1:1/metrics", "--bearer-token-file", str(token),
                                  "--budgets", str(budgets_file)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "not UTF-8" in result.stderr and "hunter2" not in result.output


# 7 -------------------------------------------------------------------------------------------------

def test_empty_body_is_a_warning_and_fails_under_fail_on_warn(cli, runner, budgets_file: Path) -> None:
    with servers.serve_exposition("") as ex:
        code, rep = report_json(cli, runner, ["--scrape", ex.url, "--budgets", str(budgets_file)])
        assert code == 0 and rep["status"] == "warn"
        assert len(rep["warnings"]) == 1 and "no series" in rep["warnings"][0] and ex.url in rep["warnings"][0]
        table = report(cli, runner, ["--scrape", ex.url, "--budgets", str(budgets_file)]).stdout
        assert "warning:" in table and "no series" in table
        assert report(cli, runner, ["--scrape", ex.url, "--budgets", str(budgets_file), "--fail-on", "warn"]).exit_code == 3


@pytest.mark.integration
def test_prometheus_with_no_series_is_a_warning(cli, runner, budgets_file: Path, tmp_path: Path) -> None:
    with servers.start_prometheus("global: {scrape_interval: 1s}\nscrape_configs: []\n", tmp_path) as prom:  # scrapes nothing
        code, rep = report_json(cli, runner, ["--prometheus", prom.url, "--budgets", str(budgets_file)])
    assert rep["total_series"] == 0 and rep["status"] == "warn"
    assert "holds no live series" in rep["warnings"][0]


# 8 -------------------------------------------------------------------------------------------------

def status_server(status: int):
    state = {"n": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state["n"] += 1
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler, state


def test_http_errors_say_what_they_mean_and_5xx_are_retried(cli, runner, budgets_file: Path) -> None:
    messages = {}
    for status in (404, 500, 503):
        handler, state = status_server(status)
        with servers.serve_http(handler, f"http{status}") as port:
            result = report(cli, runner, ["--scrape", f"http://127.0.0.1:{port}/metrics", "--retries", "1",
                                          "--budgets", str(budgets_file)])
        assert result.exit_code == 4
        one_error_line(result, f"HTTP {status}")
        messages[status] = result.stderr
        assert state["n"] == (1 if status == 404 else 2), status  # 5xx retried, 404 not
    assert "URL path" in messages[404] and "URL path" not in messages[500] and "URL path" not in messages[503]
    assert "exporter's own logs" in messages[500] and "up and healthy" in messages[503]


def test_prometheus_api_answering_503_says_so(cli, runner, budgets_file: Path) -> None:
    handler, state = status_server(503)
    with servers.serve_http(handler, "prom503") as port:
        result = report(cli, runner, ["--prometheus", f"http://127.0.0.1:{port}", "--retries", "0", "--budgets", str(budgets_file)])
    assert result.exit_code == 4
    one_error_line(result, "HTTP 503", "up and healthy")


# 9 -------------------------------------------------------------------------------------------------

def test_huge_label_value_is_bounded_in_every_format(cli, runner, budgets_file: Path) -> None:
    huge = "x" * 100_000
    with servers.serve_exposition(f'# TYPE blob_info gauge\nblob_info{{v="{huge}"}} 1\nblob_info{{v="short"}} 1\n') as ex:
        args = ["--scrape", ex.url, "--budgets", str(budgets_file)]
        for fmt in ("json", "markdown", "table"):
            out = report(cli, runner, [*args, "--format", fmt]).stdout
            assert len(out) < 20_000, fmt
        code, rep = report_json(cli, runner, args)
    values = [v["value"] for t in rep["tiers"] for m in t["top_metrics"] for ls in m["labels"] if ls["label"] == "v"
              for v in ls["top_values"]]
    long = next(v for v in values if v != "short")
    assert long.startswith("xxxx") and "100000 characters" in long and len(long) < 300
