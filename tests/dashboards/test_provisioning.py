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

import dashboard_json
import pytest
import requests
import servers
import yaml

from dashboards import build, common, provisioning

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
    from agent.metrics.exemplars import DurationExemplars
    from probes.tcp_lifecycle import DURATION_SLOTS, DurationKey

    dest = by_type(committed("datasources/bcgov.yaml"))["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert [d["datasourceUid"] for d in dest] == [provisioning.UID_TEMPO]
    ex = DurationExemplars()
    ex.remember(DurationKey(1, 0, 0, 0), 1_500_000, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    ((_, _, exemplar),) = ex.take(DURATION_SLOTS)
    assert dest[0]["name"] in exemplar.labels and exemplar.labels[dest[0]["name"]] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_tempo_traces_open_the_agents_log_lines_and_the_workloads_metrics() -> None:
    tempo = by_type(committed("datasources/bcgov.yaml"))["tempo"]["jsonData"]
    logs = tempo["tracesToLogsV2"]
    assert logs["datasourceUid"] == provisioning.UID_LOKI and logs["customQuery"] is True
    assert expanded(logs["query"]) == common.AGENT_EVENTS_SELECTOR + ' | trace_id="${__trace.traceId}"'
    metrics = tempo["tracesToMetrics"]
    assert metrics["datasourceUid"] == provisioning.UID_PROMETHEUS
    assert metrics["tags"] and metrics["queries"] and all("{$__tags}" in expanded(q["query"]) for q in metrics["queries"])


# Workloads of every kind, as the agent resolves them (cgroup path -> pod watch -> owner).
_UIDS = {kind: f"7b2a9c1e-5d4f-4e3a-9b8c-1a2b3c4d5e{n:02x}" for n, kind in enumerate(
    ("Deployment", "DaemonSet", "Job", "StatefulSet", "Pod"))}
_POD_NAMES = {"Deployment": ("web-5c6d7e8f9a-zzzzz", "web"), "DaemonSet": ("fluentbit-x7k2p", "fluentbit"),
              "Job": ("backup-28411200-q2w9c", "backup"), "StatefulSet": ("ledger-0", "ledger"), "Pod": ("debug", "debug")}
_HOST_UNIT_CGROUP = 99


def _agent_enricher():
    """The agent's own IdentityEnricher over fixed cgroup paths and pods (the resolver, owners and
    label rules are the real ones)."""
    import types

    from agent.identity.pod_enricher import IdentityEnricher
    from agent.identity.pods import PodInfo
    from agent.identity.resolver import IdentityResolver, UnresolvedCounts
    from agent.identity.tiers import TierResolver

    pods = {uid: PodInfo(uid, "payments", _POD_NAMES[kind][0], "node-a", (), types.MappingProxyType({}), kind,
                         _POD_NAMES[kind][1], types.MappingProxyType({}), "Running") for kind, uid in _UIDS.items()}
    paths = {n: f"/kubepods.slice/kubepods-pod{uid.replace('-', '_')}.slice/cri-containerd-{'ab' * 32}.scope"
             for n, uid in enumerate(_UIDS.values())}
    paths[_HOST_UNIT_CGROUP] = "/system.slice/postgresql.service"

    class Paths:
        def path_for(self, cgroup_id: int) -> str | None:
            return paths.get(cgroup_id)

    class Pods:
        available = True

        def by_uid(self, uid: str):
            return pods.get(uid)

        def by_ip(self, ip: str):
            return None

    return IdentityEnricher(IdentityResolver(Paths(), Pods(), TierResolver(), UnresolvedCounts(), node="node-a")), sorted(paths)


def grafana_tags(tags: list[dict[str, str]], span_attributes: dict[str, Any]) -> str:
    """What Grafana puts for `$__tags` in a tracesToMetrics query (createSpanLink.tsx): `label="value"`
    for each configured tag the span carries (`value` names the label, else the key), comma-joined."""
    return ", ".join(f'{t.get("value") or t["key"]}="{span_attributes[t["key"]]}"' for t in tags if span_attributes.get(t["key"]))


def test_trace_to_metrics_joins_each_workload_kinds_span_to_its_own_series() -> None:
    """The span's attributes and the metric's labels come from the agent's own code: for every kind
    (a Deployment's pod label is "" in metrics, while its span names the pod) each tag's attribute
    equals the label it maps to, and every mapped label is one the duration histogram carries."""
    from agent.metrics.collectors import ProbeMetrics
    from probes import registry

    tags = by_type(committed("datasources/bcgov.yaml"))["tempo"]["jsonData"]["tracesToMetrics"]["tags"]
    e, cgroups = _agent_enricher()
    family_labels = ProbeMetrics(registry.ALL, {}, e).state("bcgov_tcp_connection_duration_seconds").label_names
    assert {t["value"] for t in tags} <= set(family_labels)
    for cg in cgroups:
        attrs = e.workload_attributes(cg, 4242)
        labels = dict(zip(e.label_names, e.workload_labels(cg), strict=True))
        assert labels["workload"], cg  # every kind has a workload to join on
        joined = {t["value"]: attrs[t["key"]] for t in tags if t["key"] in attrs}
        assert "workload" in joined, (cg, attrs)  # the join never falls back to every series
        assert joined == {k: labels[k] for k in joined}, (cg, attrs, labels)


def test_loki_derived_fields_turn_an_agent_log_lines_trace_id_into_a_tempo_link() -> None:
    from agent.export.event_log import EventLog

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
    """A Deployment's connection as the agent exports it (its ProbeMetrics' histogram), scraped
    by a real Prometheus; the query Grafana builds from that connection's span attributes finds it."""
    from prometheus_client import CollectorRegistry, generate_latest

    from agent.metrics.collectors import ProbeMetrics
    from probes import registry
    from probes.latency_hist import hist_slot

    tempo = by_type(committed("datasources/bcgov.yaml"))["tempo"]["jsonData"]
    e, _ = _agent_enricher()
    deployment = list(_UIDS).index("Deployment")
    durations = ProbeMetrics(registry.ALL, {}, e).state("bcgov_tcp_connection_duration_seconds")
    slots = [0] * durations.slot_count
    slots[hist_slot(10_000_000, durations.slot_count)] = 7  # 7 connections of ~10 ms
    durations.add(("active", "normal", *e.workload_labels(deployment)), slots, 70_000_000)

    class Families:
        def collect(self):
            yield durations.family()

    registry = CollectorRegistry()
    registry.register(Families())
    tags = grafana_tags(tempo["tracesToMetrics"]["tags"], e.workload_attributes(deployment, 4242))
    with servers.serve_exposition(generate_latest(registry).decode()) as target, \
            servers.start_prometheus(servers.scrape_config(target.target, job="agent"), tmp_path) as prom:
        prom.wait_for_first_scrape("agent")
        for q in tempo["tracesToMetrics"]["queries"]:
            expr = expanded(q["query"]).replace("$__tags", tags)
            r = requests.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10)
            assert r.status_code == 200 and r.json()["status"] == "success", (expr, r.text)
        p99 = next(q for q in tempo["tracesToMetrics"]["queries"] if "duration" in q["query"])
        # a rate needs two samples: the series itself must be found by the same selector
        selector = "bcgov_tcp_connection_duration_seconds_count{" + tags + "}"
        servers.poll(lambda: prom.query(selector), 30, f"{selector} in Prometheus")
        assert prom.query(selector)[0]["value"][1] == "7", p99
