"""Credentials in a --scrape or --prometheus URL never reach the report or an error line in clear
text (agent/redaction/url_credentials.py): the report header in table, markdown and json, and the
one-line errors of an unreachable target. The scrape target is the population's exposition server
and the backend a real Prometheus (tests/servers.py); neither asks for the credentials, which is
enough: the point is what the governor prints."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests import servers

SECRET = "S3cret"


def _with_userinfo(url: str) -> str:
    return url.replace("http://", f"http://user:{SECRET}@", 1)


def _everything(result) -> str:  # noqa: ANN001 - click's Result
    return result.stdout + result.stderr


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_the_report_header_of_a_scrape_url_is_masked(cli: click.Group, runner: CliRunner, exporter: servers.ExpositionServer,
                                                     budgets_file: Path, fmt: str) -> None:
    served = exporter.requests_served
    result = runner.invoke(cli, ["budget", "report", "--scrape", _with_userinfo(exporter.url), "--budgets", str(budgets_file),
                                 "--no-history", "--format", fmt])
    assert result.exit_code in (0, 3), _everything(result)
    assert exporter.requests_served > served  # the page was read: the report is about it
    out = _everything(result)
    assert f"user:***@127.0.0.1:{exporter.port}" in out
    assert SECRET not in out


@pytest.mark.parametrize("flag,path", [("--scrape", "/metrics"), ("--prometheus", "")])
def test_an_unreachable_url_is_reported_masked(cli: click.Group, runner: CliRunner, budgets_file: Path, flag: str,
                                               path: str) -> None:
    url = f"http://user:{SECRET}@127.0.0.1:{servers.free_port()}{path}"
    result = runner.invoke(cli, ["budget", "report", flag, url, "--budgets", str(budgets_file), "--no-history",
                                 "--retries", "0"])
    out = _everything(result)
    assert result.exit_code == 4, out
    assert "user:***@127.0.0.1" in out and SECRET not in out


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_the_report_header_of_a_prometheus_url_is_masked(cli: click.Group, runner: CliRunner,
                                                         prometheus: servers.PrometheusServer, budgets_file: Path,
                                                         fmt: str) -> None:
    result = runner.invoke(cli, ["budget", "report", "--prometheus", _with_userinfo(prometheus.url), "--budgets",
                                 str(budgets_file), "--no-history", "--format", fmt])
    out = _everything(result)
    assert result.exit_code in (0, 3), out
    assert "prometheus http://user:***@127.0.0.1" in out
    assert SECRET not in out


def test_the_governor_service_logs_a_dead_source_and_alertmanager_masked(caplog: pytest.LogCaptureFixture) -> None:
    """`bcgov governor run`: its evaluation-failure and alert-push-failure log lines quote URLs."""
    import logging

    import population

    from governor import alerts, budgets, http, service
    from governor.scrape import ScrapeSource

    caplog.set_level(logging.WARNING)
    dead = ScrapeSource(f"http://user:{SECRET}@127.0.0.1:{servers.free_port()}/metrics", http.HttpOptions(retries=0))
    pusher = alerts.AlertmanagerPusher(f"http://am:{SECRET}@127.0.0.1:{servers.free_port()}", http.HttpOptions(retries=0))
    gov = service.Governor(dead, budgets.parse(population.BUDGETS), pusher=pusher)
    try:
        assert gov.evaluate_once() is False
    finally:
        pusher.close()
    assert "evaluation failed" in caplog.text and "alert push failed" in caplog.text, caplog.text
    assert "user:***@127.0.0.1" in caplog.text and "am:***@127.0.0.1" in caplog.text
    assert SECRET not in caplog.text and SECRET not in (gov.state().last_error or "")
