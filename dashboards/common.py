"""Shared pieces of the bcgov dashboards: datasources, template variables, links, query helpers.

Everything here returns foundation-SDK builders; nothing is built or written at import.
"""

from __future__ import annotations

import json
import urllib.parse

from grafana_foundation_sdk.builders import dashboard, prometheus
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from dashboards import provisioning

# Where runbook links point: the repo the deploy/daemonset ArgoCD example syncs (keep in step with
# deploy/daemonset/generate.py's RUNBOOK_BASE_URL).
RUNBOOK_BASE_URL = "https://github.com/homelab/bcgov/blob/main/runbooks"

PROM = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

UID_OVERVIEW = "bcgov-tiers-overview"
UID_WORKLOAD = "bcgov-workload"
UID_NODE = "bcgov-node-kernel"
UID_BUDGET = "bcgov-cardinality-budget"

# Label matchers every workload-scoped query carries, so the variables filter every panel.
WORKLOAD_SEL = 'node=~"$node", tier=~"$tier", namespace=~"$namespace", workload=~"$workload", pod=~"$pod"'
NODE_SEL = 'node=~"$node"'
TIER_SEL = 'tier=~"$tier"'


def datasource_variable(name: str, plugin: str, label: str) -> dashboard.DatasourceVariable:
    """A datasource picker, so one JSON works against any Prometheus/Tempo/Loki instance."""
    return dashboard.DatasourceVariable(name).label(label).type(plugin)


def label_variable(name: str, query: str, label: str) -> dashboard.QueryVariable:
    """A multi-select label variable; 'All' is the regex `.*`, so it also matches absent labels."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PROM)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def standard_variables(*names: str) -> list[dashboard.DatasourceVariable | dashboard.QueryVariable]:
    """The datasource variables plus the requested label variables, each filtered by the earlier."""
    known = {
        "node": label_variable("node", "label_values(bcgov_agent_probe_up, node)", "Node"),
        "tier": label_variable("tier", "label_values(bcgov_tcp_connections_total, tier)", "Tier"),
        "namespace": label_variable("namespace", 'label_values(bcgov_tcp_connections_total{tier=~"$tier"}, namespace)', "Namespace"),
        "workload": label_variable(
            "workload", 'label_values(bcgov_tcp_connections_total{tier=~"$tier", namespace=~"$namespace"}, workload)', "Workload"),
        "pod": label_variable(
            "pod", 'label_values(bcgov_tcp_connections_total{namespace=~"$namespace", workload=~"$workload"}, pod)', "Pod"),
        "budget_tier": label_variable("tier", "label_values(bcgov_governor_tier_budget_series, tier)", "Tier"),
    }
    out: list = [
        datasource_variable("datasource", "prometheus", "Prometheus"),
        datasource_variable("tempo", "tempo", "Tempo"),
        datasource_variable("loki", "loki", "Loki"),
    ]
    return out + [known[n] for n in names]


def query(expr: str, legend: str = "", *, exemplar: bool = False, fmt: pm.PromQueryFormat | None = None) -> prometheus.Dataquery:
    """A Prometheus range query on the dashboard's datasource variable."""
    q = prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").datasource(PROM).range()
    if exemplar:
        q = q.exemplar(True)
    if fmt is not None:
        q = q.format(fmt)
    return q


def runbook_link(alert: str) -> dashboard.DashboardLink:
    """The runbook of an alert this panel shows, one click away."""
    return (dashboard.DashboardLink(f"Runbook: {alert}").url(f"{RUNBOOK_BASE_URL}/{alert}.md")
            .target_blank(True).type(dm.DashboardLinkType.LINK))


def drilldown_link(title: str = "Workload drill-down") -> dashboard.DashboardLink:
    """Open the workload drill-down with this dashboard's variables and time range."""
    params = "&".join(f"${{{v}:queryparam}}" for v in ("datasource", "tempo", "loki", "node", "tier", "namespace", "workload", "pod"))
    return (dashboard.DashboardLink(title).url(f"/d/{UID_WORKLOAD}?${{__url_time_range}}&{params}")
            .type(dm.DashboardLinkType.LINK))


def drilldown_data_link() -> dashboard.DashboardLink:
    """Per-series link: the clicked series' own tier/namespace/workload become the variables."""
    fields = "&".join(f"var-{v}=${{__field.labels.{v}}}" for v in ("tier", "namespace", "workload"))
    return dashboard.DashboardLink("Drill down: ${__field.labels.workload}").url(
        f"/d/{UID_WORKLOAD}?${{__url_time_range}}&${{datasource:queryparam}}&${{tempo:queryparam}}&${{loki:queryparam}}&{fields}")


def _explore(datasource: str, query_obj: dict[str, object]) -> str:
    """A Grafana Explore URL; `$`, `{` and `}` stay literal so Grafana interpolates the variables."""
    pane = {"datasource": datasource, "queries": [{"refId": "A", "datasource": {"uid": datasource}, **query_obj}],
            "range": {"from": "${__from}", "to": "${__to}"}}
    return "/explore?left=" + urllib.parse.quote(json.dumps(pane, separators=(",", ":")), safe="${}:,")


# The agent's event lines in Loki (sent over OTLP: service_name is a stream label, the log record's
# attributes are structured metadata with `_` for `.`): one definition with the provisioning.
AGENT_EVENTS_SELECTOR = provisioning.AGENT_EVENTS_SELECTOR


def agent_events_link() -> dashboard.DashboardLink:
    """The agent's kernel-event lines (execs, exits, OOM kills, connections with trace_id) about
    the selected pods, for the panel's time range."""
    expr = AGENT_EVENTS_SELECTOR + ' | k8s_namespace_name=~"$namespace" | k8s_pod_name=~"$pod"'
    return dashboard.DashboardLink("Kernel events of the pod (agent, Loki)").url(_explore("${loki}", {"expr": expr})).target_blank(True)


def app_logs_link() -> dashboard.DashboardLink:
    """The application's own log lines (its pods' stdout/stderr) for the panel's time range."""
    expr = '{namespace=~"$namespace", pod=~"$pod"}'
    return dashboard.DashboardLink("Application logs of the pod (Loki)").url(_explore("${loki}", {"expr": expr})).target_blank(True)


def log_links() -> list[dashboard.DashboardLink]:
    """Both log views of a workload panel: what the kernel saw, and what the application said."""
    return [agent_events_link(), app_logs_link()]


def tempo_trace_link() -> dashboard.DashboardLink:
    """An exemplar's trace in Tempo: exemplars carry the span's trace_id."""
    return dashboard.DashboardLink("Trace in Tempo: ${__value.raw}").url(
        _explore("${tempo}", {"queryType": "traceql", "query": "${__data.fields.trace_id}"})).target_blank(True)
