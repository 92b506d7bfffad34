"""The four bcgov dashboards. Metric names are the ones the agent and governor export
(the probes' declared families, probes/<name>.py SPEC.metrics; agent/metrics/instruments.py, governor/service.py); workload-scoped agent metrics
carry the identity labels namespace, pod, workload, tier, and the PodMonitor adds node. Counters are
queried by their stored sample names (`..._total`): that is what Prometheus keeps, whichever
exposition format it scraped (tests/dashboards/test_dashboards_real.py runs every query against
a real agent)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards import common
from dashboards.common import NODE_SEL, TIER_SEL, WORKLOAD_SEL, query
from dashboards.panels import heat, latency, series, top_table

DURATION = "bcgov_tcp_connection_duration_seconds"
BLOCK_IO = "bcgov_block_io_latency_seconds"
RUNQ = "bcgov_runqueue_latency_seconds"
TAGS = ["bcgov"]


def _base(uid: str, title: str, description: str, variables: list) -> dashboard.Dashboard:
    d = (dashboard.Dashboard(title).uid(uid).description(description).tags(TAGS).refresh("30s")
         .time("now-1h", "now").timezone("browser").editable())
    for v in variables:
        d = d.with_variable(v)
    return d


def tiers_overview() -> dashboard.Dashboard:
    """Per data tier: traffic, failures, latency, OOMs and series against budget."""
    rate = "sum by (tier) (rate({m}{{" + WORKLOAD_SEL + "}}[$__rate_interval]))"
    drill = [common.drilldown_link()]
    d = _base(common.UID_OVERVIEW, "bcgov / Data tiers overview",
              "Every data tier at a glance; click a series or a panel link to drill into a workload.",
              common.standard_variables("node", "tier", "namespace", "workload", "pod"))
    d = d.link(common.drilldown_link()).link(
        dashboard.DashboardLink("bcgov dashboards").type(common.dm.DashboardLinkType.DASHBOARDS).tags(TAGS).as_dropdown(True).include_vars(True).keep_time(True))
    d = d.with_row(dashboard.Row("Traffic and failures"))
    d = d.with_panel(series("Connections / s by tier", [query(rate.format(m="bcgov_tcp_connections_total"), "{{tier}}")],
                            unit="reqps", links=drill, data_links=[common.drilldown_data_link()]))
    d = d.with_panel(series("Connections / s by tier and outcome",
                            [query('sum by (tier, outcome) (rate(bcgov_tcp_connections_total{' + WORKLOAD_SEL + '}[$__rate_interval]))', "{{tier}} {{outcome}}")],
                            unit="reqps", links=drill))
    d = d.with_panel(series("Resets / s by tier", [query('sum by (tier, direction) (rate(bcgov_tcp_resets_total{' + WORKLOAD_SEL + '}[$__rate_interval]))', "{{tier}} {{direction}}")],
                            unit="reqps", links=drill))
    d = d.with_panel(series("Retransmits / s by tier", [query(rate.format(m="bcgov_tcp_retransmits_total"), "{{tier}}")], unit="reqps", links=drill))
    d = d.with_row(dashboard.Row("Latency and memory"))
    d = d.with_panel(latency("Connection duration p50 / p99 by tier", DURATION, WORKLOAD_SEL, "tier", exemplars=True,
                             description="Exemplars carry the connection span's trace_id: click one to open it in Tempo.", links=drill))
    d = d.with_panel(series("OOM kills by tier", [query('sum by (tier) (increase(bcgov_oom_kills_total{' + WORKLOAD_SEL + '}[$__rate_interval]))', "{{tier}}")],
                            links=[*drill, *common.log_links()]))
    d = d.with_row(dashboard.Row("Budget and agent health"))
    d = d.with_panel(series("Series vs budget by tier",
                            [query('bcgov_governor_tier_series{' + TIER_SEL + '} / bcgov_governor_tier_budget_series{' + TIER_SEL + '}', "{{tier}}")],
                            unit="percentunit", links=[common.runbook_link("BcgovTierBudgetWarning"), common.runbook_link("BcgovTierBudgetExceeded")]))
    d = d.with_panel(series("Agent: probes down and records lost",
                            [query('count by (probe) (bcgov_agent_probe_up{' + NODE_SEL + '} == 0)', "down {{probe}}"),
                             query('sum by (probe) (rate(bcgov_agent_events_lost_total{' + NODE_SEL + '}[$__rate_interval]))', "lost/s {{probe}}")],
                            links=[common.runbook_link("BcgovAgentProbeDown"), common.runbook_link("BcgovAgentEventsLost")]))
    return d


def workload_drilldown() -> dashboard.Dashboard:
    """One workload or pod during an incident: its connections, peers, latency, processes, OOMs."""
    logs = common.log_links()
    d = _base(common.UID_WORKLOAD, "bcgov / Workload drill-down",
              "One workload (or pod): connections by peer, latency with exemplars (Tempo), processes, OOMs, node latency.",
              common.standard_variables("node", "tier", "namespace", "workload", "pod"))
    d = d.link(dashboard.DashboardLink("Data tiers overview").url(f"/d/{common.UID_OVERVIEW}?${{__url_time_range}}&${{datasource:queryparam}}&${{tier:queryparam}}"))
    d = d.with_row(dashboard.Row("Connections"))
    d = d.with_panel(series("Connections / s by direction and outcome",
                            [query('sum by (direction, outcome) (rate(bcgov_tcp_connections_total{' + WORKLOAD_SEL + '}[$__rate_interval]))', "{{direction}} {{outcome}}")],
                            unit="reqps", links=logs))
    d = d.with_panel(series("Resets / s by peer",
                            [query('sum by (direction, peer_tier, peer_workload) (rate(bcgov_tcp_resets_total{' + WORKLOAD_SEL + '}[$__rate_interval]))',
                                   "{{direction}} {{peer_tier}}/{{peer_workload}}")], unit="reqps", links=logs))
    d = d.with_panel(series("Retransmits / s by peer",
                            [query('sum by (peer_tier, peer_namespace, peer_workload) (rate(bcgov_tcp_retransmits_total{' + WORKLOAD_SEL + '}[$__rate_interval]))',
                                   "{{peer_tier}} {{peer_namespace}}/{{peer_workload}}")], unit="reqps", links=logs))
    d = d.with_panel(latency("Connection duration p50 / p99", DURATION, WORKLOAD_SEL, "direction", exemplars=True, links=logs))
    d = d.with_panel(heat("Connection duration heatmap (exemplars open Tempo)", DURATION, WORKLOAD_SEL, exemplars=True, links=logs, width=24))
    d = d.with_row(dashboard.Row("Processes and memory"))
    d = d.with_panel(series("Process execs / s", [query('sum by (pod) (rate(bcgov_process_execs_total{' + WORKLOAD_SEL + '}[$__rate_interval]))', "{{pod}}")],
                            unit="reqps", links=logs))
    d = d.with_panel(series("Process exits / s on the node by status",
                            [query('sum by (status) (rate(bcgov_process_exits_total{' + NODE_SEL + '}[$__rate_interval]))', "{{status}}")], unit="reqps", links=logs))
    d = d.with_panel(series("OOM kills", [query('sum by (pod) (increase(bcgov_oom_kills_total{' + WORKLOAD_SEL + '}[$__rate_interval]))', "{{pod}}")], links=logs))
    d = d.with_panel(series("Unresolved identities / s on the node",
                            [query('sum by (node) (rate(bcgov_agent_identity_unresolved_total{' + NODE_SEL + '}[$__rate_interval]))', "{{node}}")],
                            links=[common.runbook_link("BcgovAgentIdentityUnresolved")]))
    d = d.with_row(dashboard.Row("The node underneath"))
    d = d.with_panel(latency("Block I/O latency p50 / p99 by device", BLOCK_IO, NODE_SEL, "device", exemplars=False))
    d = d.with_panel(latency("Run-queue latency p50 / p99 by node", RUNQ, NODE_SEL, "node", exemplars=False))
    return d


def node_kernel() -> dashboard.Dashboard:
    """Per node: block I/O and run-queue latency, TCP trouble, and whether the agent sees it all."""
    d = _base(common.UID_NODE, "bcgov / Node kernel", "Block I/O and run-queue latency per node and device; agent health per node.",
              common.standard_variables("node"))
    d = d.with_panel(latency("Block I/O latency p50 / p99 by node and device", BLOCK_IO, NODE_SEL, "node, device", exemplars=False))
    d = d.with_panel(heat("Block I/O latency heatmap", BLOCK_IO, NODE_SEL, exemplars=False))
    d = d.with_panel(latency("Run-queue latency p50 / p99 by node", RUNQ, NODE_SEL, "node", exemplars=False))
    d = d.with_panel(heat("Run-queue latency heatmap", RUNQ, NODE_SEL, exemplars=False))
    d = d.with_panel(series("Retransmits and resets / s by node",
                            [query('sum by (node) (rate(bcgov_tcp_retransmits_total{' + NODE_SEL + '}[$__rate_interval]))', "retransmits {{node}}"),
                             query('sum by (node) (rate(bcgov_tcp_resets_total{' + NODE_SEL + '}[$__rate_interval]))', "resets {{node}}")], unit="reqps"))
    d = d.with_panel(series("Agent probes up by node",
                            [query('sum by (node, probe) (bcgov_agent_probe_up{' + NODE_SEL + '})', "{{node}} {{probe}}")],
                            links=[common.runbook_link("BcgovAgentProbeDown")]))
    d = d.with_panel(series("Agent records received and lost / s",
                            [query('sum by (node, probe) (rate(bcgov_agent_events_total{' + NODE_SEL + '}[$__rate_interval]))', "received {{node}} {{probe}}"),
                             query('sum by (node, probe) (rate(bcgov_agent_events_lost_total{' + NODE_SEL + '}[$__rate_interval]))', "lost {{node}} {{probe}}"),
                             query('sum by (node, probe) (rate(bcgov_agent_map_full_total{' + NODE_SEL + '}[$__rate_interval]))', "map full {{node}} {{probe}}"),
                             query('sum by (node, probe) (rate(bcgov_agent_bpf_recursion_misses_total{' + NODE_SEL + '}[$__rate_interval]))',
                                   "skipped runs {{node}} {{probe}}")],
                            unit="reqps", links=[common.runbook_link("BcgovAgentEventsLost"), common.runbook_link("BcgovAgentKernelRunsSkipped")]))
    # The agent watching itself (added after the panels above, so runbooks' viewPanel ids stay put).
    d = d.with_panel(series("Agent cost: BPF run time per probe (cores)",
                            [query('sum by (node, probe) (rate(bcgov_agent_bpf_run_seconds_total{' + NODE_SEL + '}[$__rate_interval]))',
                                   "{{node}} {{probe}}")],
                            description="The kernel's own run time of each probe's BPF programs (bcgov_agent_bpf_run_seconds_total; "
                                        "exported with bpf_stats: true in the agent config)."))
    d = d.with_panel(series("Agent: records lost, runs skipped, telemetry dropped / s",
                            [query('sum by (node, probe) (rate(bcgov_agent_events_lost_total{' + NODE_SEL + '}[$__rate_interval]))', "lost {{node}} {{probe}}"),
                             query('sum by (node, probe) (rate(bcgov_agent_bpf_recursion_misses_total{' + NODE_SEL + '}[$__rate_interval]))',
                                   "skipped runs {{node}} {{probe}}"),
                             query('sum by (node, reason) (rate(bcgov_agent_spans_dropped_total{' + NODE_SEL + '}[$__rate_interval]))',
                                   "spans dropped {{node}} {{reason}}"),
                             query('sum by (node, reason) (rate(bcgov_agent_logs_dropped_total{' + NODE_SEL + '}[$__rate_interval]))',
                                   "log lines dropped {{node}} {{reason}}")],
                            unit="reqps", description="Everything the agent saw but did not deliver: kernel records lost at the ring "
                            "buffer, program runs the kernel skipped, spans and OTLP log lines dropped before export.",
                            links=[common.runbook_link("BcgovAgentEventsLost"), common.runbook_link("BcgovAgentKernelRunsSkipped"),
                                   common.runbook_link("BcgovAgentTelemetryDropped")]))
    d = d.with_panel(series("Agent: label sets folded into __overflow__",
                            [query('sum by (node, metric) (increase(bcgov_agent_series_overflow_total{' + NODE_SEL + '}[$__rate_interval]))',
                                   "{{node}} {{metric}}")],
                            description="Distinct label sets a metric family could not export within its series budget "
                                        "(series_budgets), folded into one series whose labels are all __overflow__.",
                            links=[common.runbook_link("BcgovAgentSeriesOverflow")]))
    return d


def cardinality_budget() -> dashboard.Dashboard:
    """The governor's view: usage per tier, growth, top metrics and labels, time to exhaustion."""
    used = 'bcgov_governor_tier_series{' + TIER_SEL + '}'
    budget = 'bcgov_governor_tier_budget_series{' + TIER_SEL + '}'
    d = _base(common.UID_BUDGET, "bcgov / Cardinality budget", "Series per data tier against budgets.yaml, from bcgov_governor_*.",
              common.standard_variables("budget_tier"))
    d = d.with_panel(series("Usage of budget by tier", [query(f"{used} / {budget}", "{{tier}}")], unit="percentunit",
                            links=[common.runbook_link("BcgovTierBudgetWarning"), common.runbook_link("BcgovTierBudgetExceeded")]))
    d = d.with_panel(series("Series and budget by tier", [query(used, "series {{tier}}"), query(budget, "budget {{tier}}")]))
    d = d.with_panel(series("Growth (series per day)", [query(f"deriv({used}[1h]) * 86400", "{{tier}}")]))
    d = d.with_panel(series("Time to exhaustion at the 6h trend",
                            [query(f"({budget} - {used}) / (deriv({used}[6h]) > 0)", "{{tier}}")], unit="s",
                            links=[common.runbook_link("BcgovTierBudgetExhaustionPredicted")]))
    d = d.with_panel(top_table("Top metrics by series", 'topk(15, bcgov_governor_metric_series{' + TIER_SEL + '})'))
    d = d.with_panel(top_table("Top labels by distinct values", 'topk(15, bcgov_governor_label_values{' + TIER_SEL + '})',
                               links=[common.runbook_link("BcgovLabelValueExplosion")]))
    d = d.with_panel(series("Governor health",
                            [query("bcgov_governor_source_up", "source up"), query("bcgov_governor_stale", "stale"),
                             query("time() - bcgov_governor_last_success_timestamp_seconds", "seconds since success")],
                            links=[common.runbook_link("BcgovGovernorScrapeFailure")]))
    return d


ALL = {
    "tiers-overview": tiers_overview,
    "workload-drilldown": workload_drilldown,
    "node-kernel": node_kernel,
    "cardinality-budget": cardinality_budget,
}
