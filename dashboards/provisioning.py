"""Grafana provisioning as code: the Prometheus, Tempo and Loki data sources joined to each other,
and a dashboard provider for dashboards/json. Written by `bcgov dashboards build` with the
dashboards (dashboards/provisioning/), so the joins and the panels' links come from one place.

The joins (field names as Grafana's data source provisioning docs give them):
- Prometheus `jsonData.exemplarTraceIdDestinations`: an exemplar's `trace_id` label (the agent's
  exemplars, agent/metrics/exemplars.py) opens that trace in Tempo.
- Tempo `jsonData.tracesToLogsV2`: a span opens the agent's log lines with the same trace_id in
  Loki; `tracesToMetrics`: the span's workload's connection rate and duration in Prometheus (joined on
  namespace + workload, the labels every agent metric carries for every workload kind);
  `lokiSearch`: the same Loki. (No `serviceMap`: the agent's spans feed no service-graph metrics.)
- Loki `jsonData.derivedFields`: a log line's `trace_id` (structured metadata when the line came
  over OTLP, the JSON field when it was scraped from the agent's stderr/file) becomes a Tempo link.

Grafana expands `$VAR`/`${VAR}` from its environment in provisioning files; `$$` is a literal `$`.
Every Grafana template (`${__value.raw}`, `${__trace.traceId}`) is written with `$$`.
"""

from __future__ import annotations

from typing import Any

import yaml

UID_PROMETHEUS, UID_TEMPO, UID_LOKI = "bcgov-prometheus", "bcgov-tempo", "bcgov-loki"
AGENT_SERVICE = "bcgov-agent"
EXEMPLAR_LABEL = "trace_id"  # agent/metrics/exemplars.py
# The agent's own event lines in Loki: OTLP resource service.name is the stream label service_name;
# log attributes are structured metadata with `.` written `_` (Loki's OTLP mapping).
AGENT_EVENTS_SELECTOR = f'{{service_name="{AGENT_SERVICE}"}}'
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/bcgov"
# Span attribute -> the agent's metric label it joins (agent/identity/resolver.py, Identity): the
# namespace and the workload (every kind: Deployment, DaemonSet, Job, StatefulSet, systemd unit).
# Not k8s.pod.name -> pod: the agent sets `pod` only for kinds with stable pod names and "" for the
# rest, while spans carry the real pod name, so a pod join finds nothing for a Deployment.
TRACE_TO_METRIC_TAGS = {"k8s.namespace.name": "namespace", "bcgov.workload.name": "workload"}


def literal(template: str) -> str:
    """A Grafana template as provisioning needs it: every `$` doubled, so the environment
    expansion leaves the template itself."""
    return template.replace("$", "$$")


def datasources(prometheus_url: str = "http://prometheus:9090", tempo_url: str = "http://tempo:3200",
                loki_url: str = "http://loki:3100") -> dict[str, Any]:
    """The `apiVersion: 1` data source provisioning document (Grafana reads jsonData per type)."""
    workload_tags = [{"key": key, "value": label} for key, label in TRACE_TO_METRIC_TAGS.items()]
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus", "type": "prometheus", "uid": UID_PROMETHEUS, "access": "proxy", "url": prometheus_url,
                "isDefault": True, "editable": False,
                "jsonData": {
                    "httpMethod": "POST",
                    "exemplarTraceIdDestinations": [
                        {"name": EXEMPLAR_LABEL, "datasourceUid": UID_TEMPO, "urlDisplayLabel": "Trace in Tempo"},
                    ],
                },
            },
            {
                "name": "Tempo", "type": "tempo", "uid": UID_TEMPO, "access": "proxy", "url": tempo_url, "editable": False,
                "jsonData": {
                    "tracesToLogsV2": {
                        "datasourceUid": UID_LOKI, "spanStartTimeShift": "-5m", "spanEndTimeShift": "5m",
                        "filterByTraceID": True, "filterBySpanID": False, "customQuery": True,
                        "query": literal(AGENT_EVENTS_SELECTOR + ' | trace_id="${__trace.traceId}"'),
                    },
                    "tracesToMetrics": {
                        "datasourceUid": UID_PROMETHEUS, "spanStartTimeShift": "-5m", "spanEndTimeShift": "5m",
                        "tags": workload_tags,
                        "queries": [
                            {"name": "Connections / s", "query": literal("sum(rate(bcgov_tcp_connections_total{$__tags}[1m]))")},
                            {"name": "Connection duration p99",
                             "query": literal("histogram_quantile(0.99, sum by (le) "
                                              "(rate(bcgov_tcp_connection_duration_seconds_bucket{$__tags}[1m])))")},
                        ],
                    },
                    "lokiSearch": {"datasourceUid": UID_LOKI},
                },
            },
            {
                "name": "Loki", "type": "loki", "uid": UID_LOKI, "access": "proxy", "url": loki_url, "editable": False,
                "jsonData": {
                    "derivedFields": [
                        {"name": "trace_id", "matcherType": "label", "matcherRegex": "trace_id",
                         "datasourceUid": UID_TEMPO, "url": literal("${__value.raw}"), "urlDisplayLabel": "Trace in Tempo"},
                        {"name": "trace_id (JSON line)", "matcherType": "regex", "matcherRegex": r'"trace_id":"([0-9a-f]{32})"',
                         "datasourceUid": UID_TEMPO, "url": literal("${__value.raw}"), "urlDisplayLabel": "Trace in Tempo"},
                    ],
                },
            },
        ],
    }


def dashboard_provider(path: str = DASHBOARDS_PATH) -> dict[str, Any]:
    """The `apiVersion: 1` dashboard provider: the built JSON (dashboards/json) mounted at `path`."""
    return {"apiVersion": 1, "providers": [{
        "name": "bcgov", "orgId": 1, "folder": "bcgov", "type": "file", "disableDeletion": True,
        "allowUiUpdates": False, "updateIntervalSeconds": 60, "options": {"path": path, "foldersFromFilesStructure": False},
    }]}


def render_all() -> dict[str, str]:
    """Path under dashboards/provisioning -> YAML text (Grafana's provisioning folder layout)."""
    head = "# Generated by `bcgov dashboards build` (dashboards/provisioning.py); edit the code, not this file.\n"
    dump = lambda doc: head + yaml.safe_dump(doc, sort_keys=False, width=120)  # noqa: E731
    return {"datasources/bcgov.yaml": dump(datasources()), "dashboards/bcgov.yaml": dump(dashboard_provider())}
