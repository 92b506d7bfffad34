"""`bcgov governor run`: the service's own metrics, surviving a dead source, and alerts pushed to a
real Alertmanager carrying their runbook links."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import population
import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from governor import alerts, budgets, http, service
from governor.scrape import ScrapeSource
from tests import servers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RB = "https://git.example/bcgov/runbooks"


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_metrics_survive_a_dead_source_with_last_good_state() -> None:
    b = budgets.parse(population.BUDGETS)
    clock = Clock()
    registry = CollectorRegistry()
    with servers.serve_exposition(population.exposition()) as ex:
        # No retries: each failed evaluation below should cost one refused connection, not backoff sleeps.
        gov = service.Governor(ScrapeSource(ex.url, http.HttpOptions(retries=0), clock=clock), b, interval_seconds=60, clock=clock)
        gov.register(registry)
        assert gov.evaluate_once() is True
    s = samples(registry)
    assert s[("bcgov_governor_tier_series", (("tier", "stream"),))] == 55
    assert s[("bcgov_governor_tier_budget_series", (("tier", "stream"),))] == 50
    assert s[("bcgov_governor_metric_series", (("metric", population.FLINK), ("tier", "stream")))] == 53
    assert s[("bcgov_governor_label_values", (("label", "task_attempt"), ("metric", population.FLINK), ("tier", "stream")))] == 23
    assert s[("bcgov_governor_tier_last_success_timestamp_seconds", (("tier", "batch"),))] == clock.t
    assert (s[("bcgov_governor_source_up", ())], s[("bcgov_governor_stale", ())]) == (1, 0)
    per_tier = [k for k in s if k[0] == "bcgov_governor_label_values" and ("tier", "stream") in k[1]]
    assert len(per_tier) <= b.defaults.top_n  # the governor's own cardinality is bounded

    # The exporter is gone: the evaluation fails, the last good counts stay; they are not stale
    # until stale_after_seconds (600) have passed since the last success.
    clock.t += 60
    assert gov.evaluate_once() is False
    s = samples(registry)
    assert s[("bcgov_governor_tier_series", (("tier", "stream"),))] == 55
    assert (s[("bcgov_governor_source_up", ())], s[("bcgov_governor_stale", ())]) == (0, 0)
    clock.t += 541
    assert samples(registry)[("bcgov_governor_stale", ())] == 1
    clock.t -= 541
    assert s[("bcgov_governor_evaluations_total", (("result", "error"),))] == 1
    assert s[("bcgov_governor_evaluations_total", (("result", "success"),))] == 1
    assert "cannot reach scrape target" in gov.state().last_error
    assert gov.next_delay() == 1.0
    gov.evaluate_once(), gov.evaluate_once()
    assert gov.next_delay() == 4.0  # backoff doubles, capped at the interval
    for _ in range(10):
        gov.evaluate_once()
    assert gov.next_delay() == 60


def test_alerts_pushed_to_alertmanager_with_runbook_links(tmp_path: Path) -> None:
    b = budgets.parse(population.BUDGETS)
    with servers.start_alertmanager(tmp_path) as am, servers.serve_exposition(population.exposition()) as ex:
        pusher = alerts.AlertmanagerPusher(am.url, interval_seconds=60)
        gov = service.Governor(ScrapeSource(ex.url), b, interval_seconds=60, pusher=pusher, runbook_base_url=RB)
        assert gov.evaluate_once()
        got = am.wait_for_alerts(2, source="bcgov-governor")
        by_name = {a["labels"]["alertname"]: a for a in got}
        assert set(by_name) == {"BcgovTierBudgetExceeded", "BcgovTierBudgetWarning"}
        exceeded = by_name["BcgovTierBudgetExceeded"]
        assert exceeded["labels"]["tier"] == "stream" and exceeded["labels"]["severity"] == "critical"
        assert exceeded["annotations"]["runbook_url"] == f"{RB}/BcgovTierBudgetExceeded.md"
        assert exceeded["annotations"]["summary"] == "Tier stream has 55 series, over its budget of 50"
        assert by_name["BcgovTierBudgetWarning"]["labels"]["tier"] == "batch"

        # The exporter shrinks under budget: the next push resolves the exceeded alert.
        ex.set_body(population.exposition({"a": 5, "b": 5, "c": 5}))
        assert gov.evaluate_once()
        servers.poll(lambda: {a["labels"]["alertname"] for a in am.alerts(source="bcgov-governor")} == {"BcgovTierBudgetWarning"},
                     servers.READY_TIMEOUT_S, "the exceeded alert to resolve", am.log_tail)
        pusher.close()


def test_dead_source_pages_scrape_failure_for_every_tier(tmp_path: Path) -> None:
    b = budgets.parse(population.BUDGETS)
    with servers.start_alertmanager(tmp_path) as am:
        dead = ScrapeSource(f"http://127.0.0.1:{servers.free_port()}/metrics", http.HttpOptions(retries=0))
        gov = service.Governor(dead, b, pusher=alerts.AlertmanagerPusher(am.url), runbook_base_url=RB)
        assert gov.evaluate_once() is False
        got = am.wait_for_alerts(3, alertname="BcgovGovernorScrapeFailure")
        assert sorted(a["labels"]["tier"] for a in got) == ["batch", "oltp", "stream"]
        assert {a["annotations"]["runbook_url"] for a in got} == {f"{RB}/BcgovGovernorScrapeFailure.md"}


def test_governor_run_cli_serves_metrics_and_stops_on_sigterm(tmp_path: Path, budgets_file: Path) -> None:
    port = servers.free_port()
    with servers.serve_exposition(population.exposition()) as ex:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bcgov.cli", "governor", "run", "--scrape", ex.url, "--budgets", str(budgets_file),
             "--listen", f"127.0.0.1:{port}", "--interval", "1s", "--no-history"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def stream_series() -> float | None:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                for fam in text_string_to_metric_families(text):
                    for s in fam.samples:
                        if s.name == "bcgov_governor_tier_series" and s.labels == {"tier": "stream"}:
                            return s.value
                return None

            def up() -> float | None:
                if proc.poll() is not None:
                    raise servers.ServerError(f"governor exited: {proc.communicate()}")
                return stream_series()

            assert servers.poll(up, servers.READY_TIMEOUT_S, "the governor's metrics") == 55
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in err
