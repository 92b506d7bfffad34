"""Grafana provisioning as code (dashboards/provisioning.py -> dashboards/provisioning/): the files
are the build's, and the fields Grafana reads join the three pillars:
Prometheus exemplarTraceIdDestinations -> Tempo, Tempo tracesToLogsV2 -> Loki and tracesToMetrics
-> Prometheus, Loki derivedFields -> Tempo. No Grafana, Tempo or Loki runs here: the join keys are
checked against what the agent really writes (its exemplar labels, its event lines), Grafana's
environment expansion is applied as Grafana does (`$$` -> `$`), and the metric queries run in a
real Prometheus (marker integration)."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import requests
import yaml

from dashboards import build, common, provisioning

import dashboard_json
import servers

PROV_DIR = dashboard_json.ROOT / "dashboards" / "provisioning"
T0_NS = 1_800_000_000 * 10**9


def committed(rel: str) -> dict[str, Any]:
    return yaml.safe_load((PROV_DIR / rel).read_text())


def expanded(value: str) -> str:
    """What Grafana makes of a provisioned string: `$$` is a literal `$`; any other `$NAME` or
    `${NAME}` would be replaced from Grafana's environment, so there must be none."""
    lone = re.sub(r"\$\$", "", value)
    assert "$" not in lone, f"{value!r}: Grafana would expand an environment variable here; write $$"
    return value.replace("$$", "$")


def by_type(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["type"]: d for d in doc["datasources"]}


def test_committed_files_equal_the_build(tmp_path) -> None:
    for rel, text in provisioning.render_all().items():
        assert (PROV_DIR / rel).read_text() == text, f"{rel} is stale: run .venv/bin/bcgov dashboards build"
    written = build.write(tmp_path / "json", tmp_path / "prov")
    assert sorted(str(p.relative_to(tmp_path / "prov")) for p in written if "prov" in p.parts) == sorted(provisioning.render_all())


def test_three_datasources_with_the_uids_they_link_by() -> None:
    ds = by_type(committed("datasources/bcgov.yaml"))
    assert committed("datasources/bcgov.yaml")["apiVersion"] == 1
    assert {t: d["uid"] for t, d in ds.items()} == {"prometheus": provisioning.UID_PROMETHEUS, "tempo": provisioning.UID_TEMPO,
                                                     "loki": provisioning.UID_LOKI}
    # every datasourceUid anywhere names one of the three
    uids = {d["uid"] for d in ds.values()}
    found = re.findall(r"datasourceUid: (\S+)", (PROV_DIR / "datasources/bcgov.yaml").read_text())
    assert found and set(found) <= uids


def test_prometheus_exemplars_open_tempo_under_the_agents_exemplar_label() -> None:
    from agent.exemplars import DurationExemplars

    dest = by_type(committed("datasources/bcgov.yaml"))["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert [d["datasourceUid"] for d in dest] == [provisioning.UID_TEMPO]
    ex = DurationExemplars()
    ex.remember(("a",), 1_500_000, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    ((_, _, exemplar),) = ex.take()
    assert dest[0]["name"] in exemplar.labels and exemplar.labels[dest[0]["name"]] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_tempo_traces_open_the_agents_log_lines_and_the_workloads_metrics() -> None:
    tempo = by_type(committed("datasources/bcgov.yaml"))["tempo"]["jsonData"]
    logs = tempo["tracesToLogsV2"]
    assert logs["datasourceUid"] == provisioning.UID_LOKI and logs["customQuery"] is True
    assert expanded(logs["query"]) == common.AGENT_EVENTS_SELECTOR + ' | trace_id="${__trace.traceId}"'
    metrics = tempo["tracesToMetrics"]
    assert metrics["datasourceUid"] == provisioning.UID_PROMETHEUS
    # the span attributes the agent sets become the agent's Prometheus identity labels
    assert {t["key"]: t["value"] for t in metrics["tags"]} == {"k8s.namespace.name": "namespace", "k8s.pod.name": "pod"}
    assert metrics["queries"] and all("{$__tags}" in expanded(q["query"]) for q in metrics["queries"])


def test_loki_derived_fields_turn_an_agent_log_lines_trace_id_into_a_tempo_link() -> None:
    from agent.event_log import EventLog

    fields = by_type(committed("datasources/bcgov.yaml"))["loki"]["jsonData"]["derivedFields"]
    assert all(f["datasourceUid"] == provisioning.UID_TEMPO and expanded(f["url"]) == "${__value.raw}" for f in fields)
    # over OTLP, Loki keeps the LogRecord's trace_id as structured metadata named trace_id
    assert {"matcherType": "label", "matcherRegex": "trace_id"}.items() <= next(f for f in fields if f["matcherType"] == "label").items()
    # a line scraped from the agent's stderr or file: the regex finds the trace_id the agent wrote
    buf = io.StringIO()
    EventLog(buf).write(T0_NS, "tcp connection reset", {"k8s.pod.name": "ledger-0"}, severity="WARN",
                        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")
    regex = next(f for f in fields if f["matcherType"] == "regex")["matcherRegex"]
    m = re.search(regex, buf.getvalue())
    assert m and m.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_dashboard_provider_serves_the_built_json() -> None:
    (p,) = committed("dashboards/bcgov.yaml")["providers"]
    assert p["type"] == "file" and p["options"]["path"] == provisioning.DASHBOARDS_PATH and p["allowUiUpdates"] is False


def test_the_dashboards_loki_links_use_the_same_agent_stream() -> None:
    assert common.AGENT_EVENTS_SELECTOR == provisioning.AGENT_EVENTS_SELECTOR


@pytest.mark.integration
def test_trace_to_metrics_queries_run_in_a_real_prometheus(tmp_path) -> None:
    tempo = by_type(committed("datasources/bcgov.yaml"))["tempo"]["jsonData"]
    tags = 'namespace="payments",pod="ledger-0"'  # what Grafana puts for $__tags from the span's attributes
    with servers.serve_exposition("") as target, \
            servers.start_prometheus(servers.scrape_config(target.target, job="empty"), tmp_path) as prom:
        for q in tempo["tracesToMetrics"]["queries"]:
            expr = expanded(q["query"]).replace("$__tags", tags)
            r = requests.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10)
            assert r.status_code == 200 and r.json()["status"] == "success", (expr, r.text)
