"""Alert rules generated from the budgets: the same alert set for every tier, plus the agent's own.

Every alert carries `severity` and `tier` labels and `summary`, `description` and `runbook_url`
annotations; the runbook is `runbooks/<AlertName>.md` in this repository (a test holds the two sets
equal). Tier thresholds come from the budgets file, so regenerate the rules when budgets change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from governor.budgets import Budgets, Tier

# Alert names, grouped by scope. Changing one means renaming its runbook.
TIER_ALERTS = (
    "BcgovTierBudgetWarning",
    "BcgovTierBudgetExceeded",
    "BcgovTierBudgetExhaustionPredicted",
    "BcgovLabelValueExplosion",
    "BcgovGovernorScrapeFailure",
)
AGENT_ALERTS = ("BcgovAgentProbeDown", "BcgovAgentEventsLost", "BcgovAgentKernelRunsSkipped", "BcgovAgentIdentityUnresolved",
                "BcgovAgentSeriesOverflow", "BcgovAgentTelemetryDropped")
ALERT_NAMES = TIER_ALERTS + AGENT_ALERTS
AGENT_TIER = "platform"  # the agent is platform software; its alerts carry this tier
PREDICT_WINDOW = "6h"
PREDICT_HORIZON_SECONDS = 24 * 3600
IDENTITY_UNRESOLVED_RATIO = 0.05
# Overflow is counted once per distinct label set folded, so the counter moves in bursts: the alert
# fires on any increase over this window and clears once a window passes without one.
OVERFLOW_WINDOW = "30m"


@dataclasses.dataclass(frozen=True)
class Rule:
    alert: str
    expr: str
    for_: str
    severity: str
    tier: str
    summary: str
    description: str

    def to_dict(self, runbook_base_url: str) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, "tier": self.tier},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": runbook_url(runbook_base_url, self.alert),
            },
        }


def runbook_url(base: str, alert: str) -> str:
    return f"{base.rstrip('/')}/{alert}.md"


def _sel(metric: str, tier: str, extra: str = "") -> str:
    return f'{metric}{{tier="{tier}"{extra}}}'


def tier_rules(t: Tier, stale_after_seconds: float) -> list[Rule]:
    """The five tier alerts for one tier."""
    series = _sel("bcgov_governor_tier_series", t.name)
    budget = _sel("bcgov_governor_tier_budget_series", t.name)
    pct = f"{t.warn_ratio * 100:g}%"
    labels = _sel("bcgov_governor_label_values", t.name)
    # Labels with their own cap get their own threshold; the tier default covers the rest.
    if t.label_caps:
        capped = "|".join(sorted(t.label_caps))
        parts = [f'{_sel("bcgov_governor_label_values", t.name, f",label!~{chr(34)}{capped}{chr(34)}")} > {t.max_label_values}']
        parts += [f'{_sel("bcgov_governor_label_values", t.name, f",label={chr(34)}{lb}{chr(34)}")} > {cap}'
                  for lb, cap in sorted(t.label_caps.items())]
        explosion = "\n  or\n".join(parts)
    else:
        explosion = f"{labels} > {t.max_label_values}"
    last = _sel("bcgov_governor_tier_last_success_timestamp_seconds", t.name)
    return [
        Rule("BcgovTierBudgetWarning",
             f"{series} >= {t.warn_ratio:g} * {budget}\nand\n{series} <= {budget}",
             "15m", "warning", t.name,
             f"Tier {t.name} has {{{{ $value }}}} series, at least {pct} of its budget of {t.max_series}",
             f"The {t.name} tier is close to its series budget ({t.max_series}). Find the metric and label that grew "
             f"with `bcgov budget report --tier {t.name}` before it goes over."),
        Rule("BcgovTierBudgetExceeded", f"{series} > {budget}", "5m", "critical", t.name,
             f"Tier {t.name} has {{{{ $value }}}} series, over its budget of {t.max_series}",
             f"The {t.name} tier exceeds its series budget: head memory and query cost grow with it. "
             f"`bcgov budget fix --tier {t.name}` prints the relabel rules that bring it back."),
        Rule("BcgovTierBudgetExhaustionPredicted",
             f"predict_linear({series}[{PREDICT_WINDOW}], {PREDICT_HORIZON_SECONDS}) > {budget}\nand\n{series} <= {budget}",
             "30m", "warning", t.name,
             f"Tier {t.name} is projected to reach {{{{ $value | humanize }}}} series within 24h, over its budget of {t.max_series}",
             f"The {PREDICT_WINDOW} trend of the {t.name} tier crosses its budget within 24 hours."),
        Rule("BcgovLabelValueExplosion", explosion, "10m", "warning", t.name,
             f"{{{{ $labels.metric }}}} label {{{{ $labels.label }}}} has {{{{ $value }}}} distinct values in tier {t.name}",
             f"One label of one metric in {t.name} has more distinct values than its cap (default {t.max_label_values}); "
             "ids in labels (query, run, task attempt, pod) multiply series."),
        Rule("BcgovGovernorScrapeFailure",
             f"(time() - {last}) > {stale_after_seconds:g}\nor\nabsent({last})",
             "5m", "warning", t.name,
             f"The governor has no fresh series count for tier {t.name} (stale for {{{{ $value | humanizeDuration }}}}, or missing)",
             f"Budgets for {t.name} are not being checked: the governor cannot read its source, or Prometheus cannot scrape the governor."),
    ]


def agent_rules() -> list[Rule]:
    """The agent's own health alerts."""
    return [
        Rule("BcgovAgentProbeDown", "bcgov_agent_probe_up == 0", "10m", "warning", AGENT_TIER,
             "Probe {{ $labels.probe }} is not running on {{ $labels.instance }}",
             "A bcgov probe failed to load or stopped; its signals are missing on this node. The agent log names the missing tracepoint."),
        Rule("BcgovAgentEventsLost", "sum by (instance, probe) (rate(bcgov_agent_events_lost_total[5m])) > 0", "10m", "warning", AGENT_TIER,
             "The agent on {{ $labels.instance }} loses {{ $value | humanize }} {{ $labels.probe }} events/s",
             "Kernel events are dropped before user space reads them (ring buffer full or reader too slow)."),
        Rule("BcgovAgentKernelRunsSkipped",
             "sum by (instance, probe, program) (rate(bcgov_agent_bpf_recursion_misses_total[5m])) > 0", "10m", "warning", AGENT_TIER,
             "The kernel skips {{ $value | humanize }} runs/s of {{ $labels.probe }} {{ $labels.program }} on {{ $labels.instance }}",
             "Another BPF program was running on that CPU when the tracepoint fired, so the kernel did not run the agent's "
             "program (recursion_misses): whatever that run would have counted or sent is missing."),
        Rule("BcgovAgentIdentityUnresolved",
             "sum by (instance) (rate(bcgov_agent_identity_unresolved_total[10m]))\n/\n"
             f"clamp_min(sum by (instance) (rate(bcgov_agent_events_total[10m])), 1e-9)\n> {IDENTITY_UNRESOLVED_RATIO:g}",
             "15m", "warning", AGENT_TIER,
             "{{ $value | humanizePercentage }} of events on {{ $labels.instance }} have no pod identity",
             "The agent cannot map cgroups or IPs to pods for a share of events; spans and metrics lose their tier."),
        Rule("BcgovAgentSeriesOverflow",
             f"sum by (instance, metric) (increase(bcgov_agent_series_overflow_total[{OVERFLOW_WINDOW}])) > 0", "0s", "warning", AGENT_TIER,
             "{{ $labels.metric }} on {{ $labels.instance }} folded {{ $value | humanize }} label sets into __overflow__ "
             f"in the last {OVERFLOW_WINDOW}",
             "The metric family reached its series budget on this node (series_budgets / series_budget_default): later label "
             "sets are summed into one series whose labels are all __overflow__, so per-workload detail is missing for them."),
        Rule("BcgovAgentTelemetryDropped",
             "sum by (instance, signal, reason) (\n"
             '  label_replace(rate(bcgov_agent_spans_dropped_total{reason!="shutdown"}[5m]), "signal", "spans", "", "")\n'
             "  or\n"
             '  label_replace(rate(bcgov_agent_logs_dropped_total{reason!="shutdown"}[5m]), "signal", "logs", "", "")\n'
             ") > 0", "10m", "warning", AGENT_TIER,
             "The agent on {{ $labels.instance }} drops {{ $value | humanize }} {{ $labels.signal }}/s ({{ $labels.reason }})",
             "Spans or event lines (over OTLP) were made but not delivered: the export queue is full (queue_full) or the "
             "collector refuses or does not answer (export_failed). Traces behind exemplars, or log lines, are missing for that share."),
    ]


def build(budgets: Budgets, runbook_base_url: str | None = None, interval_seconds: float = 60.0) -> list[dict[str, Any]]:
    """Rule groups: one per tier, one for the agent."""
    base = runbook_base_url or budgets.defaults.runbook_base_url
    # Data counts as stale after the configured time, and never sooner than three evaluations.
    stale = max(budgets.defaults.stale_after_seconds, 3 * interval_seconds)
    groups = [{"name": f"bcgov-governor-{t.name}", "rules": [r.to_dict(base) for r in tier_rules(t, stale)]}
              for t in budgets.tiers.values()]
    groups.append({"name": "bcgov-agent", "rules": [r.to_dict(base) for r in agent_rules()]})
    return groups


def render(groups: list[dict[str, Any]], fmt: str = "prometheus", name: str = "bcgov-governor") -> str:
    """YAML for a Prometheus rule file, or a prometheus-operator PrometheusRule."""
    if fmt == "prometheusrule":
        doc: dict[str, Any] = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "bcgov", "app.kubernetes.io/component": "governor"}},
            "spec": {"groups": groups},
        }
    else:
        doc = {"groups": groups}
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, so the rule file reads like hand-written PromQL."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)
