"""Generated rules: valid for promtool, every alert fires on its condition and stays silent
otherwise (`promtool test rules`), every alert has a runbook and every runbook an alert."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from governor import budgets, rules

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
SECTIONS = ("## Symptom", "## Impact", "## Triage", "## Mitigation", "## Prevention")
BUDGETS = """\
defaults: {runbook_base_url: "https://git.example/bcgov/runbooks"}
tiers:
  stream:
    max_series: 50
    max_label_values: 100
    labels: {task_attempt: 20}
    match: {metric_prefixes: [flink_]}
"""
RB = "https://git.example/bcgov/runbooks"


def _ann(alert: str, summary: str, b: budgets.Budgets) -> dict[str, str]:
    desc = {r.alert: r.description for r in rules.tier_rules(b.tier("stream"), 600) + rules.agent_rules()}
    return {"summary": summary, "description": desc[alert], "runbook_url": f"{RB}/{alert}.md"}


def _case(alert: str, series: list[tuple[str, str]], at: str, expect: list[tuple[dict[str, str], str]], b: budgets.Budgets) -> dict:
    return {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": [{
            "eval_time": at, "alertname": alert,
            "exp_alerts": [{"exp_labels": labels, "exp_annotations": _ann(alert, summary, b)} for labels, summary in expect],
        }],
    }


def cases(b: budgets.Budgets) -> list[dict]:
    S = 'bcgov_governor_tier_series{tier="stream"}'
    B = 'bcgov_governor_tier_budget_series{tier="stream"}'
    st = {"tier": "stream"}
    c = []
    # Warning: 45 of 50 fires after 15m; 30 is quiet; 60 is Exceeded, not Warning.
    c.append(_case("BcgovTierBudgetWarning", [(S, "45x30"), (B, "50x30")], "20m",
                   [({**st, "severity": "warning"}, "Tier stream has 45 series, at least 80% of its budget of 50")], b))
    c.append(_case("BcgovTierBudgetWarning", [(S, "30x30"), (B, "50x30")], "20m", [], b))
    c.append(_case("BcgovTierBudgetWarning", [(S, "60x30"), (B, "50x30")], "20m", [], b))
    c.append(_case("BcgovTierBudgetExceeded", [(S, "60x30"), (B, "50x30")], "10m",
                   [({**st, "severity": "critical"}, "Tier stream has 60 series, over its budget of 50")], b))
    c.append(_case("BcgovTierBudgetExceeded", [(S, "50x30"), (B, "50x30")], "10m", [], b))
    # +3 series/h for 7h: 31 now, 103 projected in 24h.
    c.append(_case("BcgovTierBudgetExhaustionPredicted", [(S, "10+0.05x600"), (B, "50x600")], "7h",
                   [({**st, "severity": "warning"}, "Tier stream is projected to reach 103 series within 24h, over its budget of 50")], b))
    c.append(_case("BcgovTierBudgetExhaustionPredicted", [(S, "40x600"), (B, "50x600")], "7h", [], b))
    L = 'bcgov_governor_label_values{tier="stream",metric="flink_x",label="%s"}'
    c.append(_case("BcgovLabelValueExplosion", [(L % "task_attempt", "25x30"), (L % "pod", "90x30"), (L % "host", "150x30")], "15m", [
        ({**st, "severity": "warning", "metric": "flink_x", "label": "host"}, "flink_x label host has 150 distinct values in tier stream"),
        ({**st, "severity": "warning", "metric": "flink_x", "label": "task_attempt"}, "flink_x label task_attempt has 25 distinct values in tier stream"),
    ], b))
    c.append(_case("BcgovLabelValueExplosion", [(L % "task_attempt", "20x30"), (L % "pod", "100x30")], "15m", [], b))
    T = 'bcgov_governor_tier_last_success_timestamp_seconds{tier="stream"}'
    # Stuck at t=0: stale from 10m, fires 5m later. Advancing with time: quiet. Missing: fires.
    c.append(_case("BcgovGovernorScrapeFailure", [(T, "0x30")], "20m",
                   [({**st, "severity": "warning"}, "The governor has no fresh series count for tier stream (stale for 20m 0s, or missing)")], b))
    c.append(_case("BcgovGovernorScrapeFailure", [(T, "0+60x30")], "20m", [], b))
    c.append(_case("BcgovGovernorScrapeFailure", [('bcgov_governor_tier_series{tier="stream"}', "1x30")], "10m",
                   [({**st, "severity": "warning"}, "The governor has no fresh series count for tier stream (stale for 1s, or missing)")], b))
    pf = {"tier": "platform", "severity": "warning"}
    c.append(_case("BcgovAgentProbeDown", [('bcgov_agent_probe_up{probe="tcp",instance="n1"}', "0x30"),
                                           ('bcgov_agent_probe_up{probe="oom",instance="n1"}', "1x30")], "15m",
                   [({**pf, "probe": "tcp", "instance": "n1"}, "Probe tcp is not running on n1")], b))
    c.append(_case("BcgovAgentProbeDown", [('bcgov_agent_probe_up{probe="tcp",instance="n1"}', "1x30")], "15m", [], b))
    c.append(_case("BcgovAgentEventsLost", [('bcgov_agent_events_lost_total{probe="tcp",instance="n1"}', "0+60x30")], "20m",
                   [({**pf, "probe": "tcp", "instance": "n1"}, "The agent on n1 loses 1 tcp events/s")], b))
    c.append(_case("BcgovAgentEventsLost", [('bcgov_agent_events_lost_total{probe="tcp",instance="n1"}', "5x30")], "20m", [], b))
    K = 'bcgov_agent_bpf_recursion_misses_total{probe="tcp_lifecycle",program="sock:inet_sock_set_state",instance="n1"}'
    c.append(_case("BcgovAgentKernelRunsSkipped", [(K, "0+120x30")], "20m",
                   [({**pf, "probe": "tcp_lifecycle", "program": "sock:inet_sock_set_state", "instance": "n1"},
                     "The kernel skips 2 runs/s of tcp_lifecycle sock:inet_sock_set_state on n1")], b))
    c.append(_case("BcgovAgentKernelRunsSkipped", [(K, "246x30")], "20m", [], b))
    O = 'bcgov_agent_series_overflow_total{metric="bcgov_tcp_connections",instance="n1"}'
    # 0 for 10m, then 3 label sets folded at once: firing 10m later (the burst is in the 30m window),
    # quiet once 30m pass without another.
    c.append(_case("BcgovAgentSeriesOverflow", [(O, "0x10 3x60")], "20m",
                   [({**pf, "metric": "bcgov_tcp_connections", "instance": "n1"},
                     "bcgov_tcp_connections on n1 folded 3 label sets into __overflow__ in the last 30m")], b))
    c.append(_case("BcgovAgentSeriesOverflow", [(O, "0x10 3x60")], "55m", [], b))
    c.append(_case("BcgovAgentSeriesOverflow", [(O, "0x60")], "30m", [], b))
    D = 'bcgov_agent_spans_dropped_total{reason="%s",instance="n1"}'
    c.append(_case("BcgovAgentTelemetryDropped", [(D % "queue_full", "0+300x30"), (D % "shutdown", "0+600x30")], "20m",
                   [({**pf, "signal": "spans", "reason": "queue_full", "instance": "n1"}, "The agent on n1 drops 5 spans/s (queue_full)")], b))
    G = 'bcgov_agent_logs_dropped_total{reason="%s",instance="n1"}'
    c.append(_case("BcgovAgentTelemetryDropped", [(G % "export_failed", "0+120x30"), (D % "queue_full", "0x30")], "20m",
                   [({**pf, "signal": "logs", "reason": "export_failed", "instance": "n1"}, "The agent on n1 drops 2 logs/s (export_failed)")], b))
    c.append(_case("BcgovAgentTelemetryDropped", [(D % "export_failed", "7x30"), (D % "shutdown", "0+600x30")], "20m", [], b))
    U, E = 'bcgov_agent_identity_unresolved_total{reason="pod",instance="n1"}', 'bcgov_agent_events_total{probe="tcp",instance="n1"}'
    c.append(_case("BcgovAgentIdentityUnresolved", [(U, "0+60x40"), (E, "0+600x40")], "30m",
                   [({**pf, "instance": "n1"}, "10% of events on n1 have no pod identity")], b))
    c.append(_case("BcgovAgentIdentityUnresolved", [(U, "0+6x40"), (E, "0+600x40")], "30m", [], b))
    return c


@pytest.fixture
def generated(tmp_path: Path) -> tuple[budgets.Budgets, Path]:
    b = budgets.parse(BUDGETS, "b.yaml")
    path = tmp_path / "bcgov-rules.yml"
    path.write_text(rules.render(rules.build(b)))
    return b, path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_promtool_check_rules_on_shipped_and_test_budgets(generated, tmp_path: Path) -> None:
    _, path = generated
    shipped = tmp_path / "shipped.yml"
    shipped.write_text(rules.render(rules.build(budgets.load())))
    r = promtool("check", "rules", str(path), str(shipped))
    assert r.returncode == 0, r.stdout + r.stderr
    n_tiers = len(budgets.load().tiers)
    assert f"SUCCESS: {5 * n_tiers + len(rules.AGENT_ALERTS)} rules found" in r.stdout


@pytest.mark.integration
def test_every_alert_fires_and_stays_silent(generated, tmp_path: Path) -> None:
    b, path = generated
    test_cases = cases(b)
    fired = {tc["alert_rule_test"][0]["alertname"] for tc in test_cases if tc["alert_rule_test"][0]["exp_alerts"]}
    silent = {tc["alert_rule_test"][0]["alertname"] for tc in test_cases if not tc["alert_rule_test"][0]["exp_alerts"]}
    assert fired == silent == set(rules.ALERT_NAMES)
    test_file = tmp_path / "bcgov-rules.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [path.name], "evaluation_interval": "1m", "tests": test_cases}, sort_keys=False))
    r = promtool("test", "rules", str(test_file))
    assert r.returncode == 0, r.stdout + r.stderr
    # The harness really compares: one wrong expected summary must fail.
    broken = test_cases[3]
    broken["alert_rule_test"][0]["exp_alerts"][0]["exp_annotations"]["summary"] += " (wrong)"
    test_file.write_text(yaml.safe_dump({"rule_files": [path.name], "tests": [broken]}, sort_keys=False))
    assert promtool("test", "rules", str(test_file)).returncode == 1


def test_every_rule_has_severity_tier_summary_and_runbook() -> None:
    groups = rules.build(budgets.load(), runbook_base_url="https://x/runbooks/")
    assert [g["name"] for g in groups] == [f"bcgov-governor-{t}" for t in budgets.load().tiers] + ["bcgov-agent"]
    for g in groups:
        for r in g["rules"]:
            assert r["labels"]["severity"] in ("warning", "critical") and r["labels"]["tier"]
            assert r["annotations"]["summary"] and r["annotations"]["runbook_url"] == f"https://x/runbooks/{r['alert']}.md"


def test_prometheusrule_format() -> None:
    doc = yaml.safe_load(rules.render(rules.build(budgets.load()), "prometheusrule"))
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == ("monitoring.coreos.com/v1", "PrometheusRule", "bcgov-governor")
    assert len(doc["spec"]["groups"]) == 7


def test_runbooks_match_alerts_one_to_one() -> None:
    files = {p.stem for p in RUNBOOKS.glob("*.md")}
    assert files == set(rules.ALERT_NAMES)


@pytest.mark.parametrize("alert", rules.ALERT_NAMES)
def test_runbook_has_every_section_and_real_queries(alert: str) -> None:
    text = (RUNBOOKS / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n") and "**Pattern:**" in text
    positions = [text.find(s) for s in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), f"{alert}: sections missing or out of order"
    triage = text[positions[2]:positions[3]]
    promql = re.findall(r"```promql\n(.*?)```", triage, re.S)
    assert promql and any("bcgov_" in q for q in promql)


def test_cli_rules_writes_file(cli, runner, tmp_path: Path) -> None:
    out = tmp_path / "r.yml"
    result = runner.invoke(cli, ["budget", "rules", "--format", "prometheusrule", "-o", str(out), "--runbook-base-url", "https://h/rb"])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    assert doc["spec"]["groups"][0]["rules"][0]["annotations"]["runbook_url"] == "https://h/rb/BcgovTierBudgetWarning.md"
