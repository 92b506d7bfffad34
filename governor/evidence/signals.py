"""The key signals of an incident, as PromQL templates over the agent's and governor's metrics.

Each template gets `{sel}` (the scope matchers) and `{w}` (the rate window). Block I/O and
run-queue latency come from the agent's block_io and runqueue probes (histograms with the identity
labels, so the scope's tier/namespace/pod matchers apply).
"""

from __future__ import annotations

import dataclasses

from governor.evidence.scope import Scope
from governor.evidence.timewindow import Window

_IDENTITY = ("tier", "namespace", "pod")


@dataclasses.dataclass(frozen=True)
class Signal:
    """A named PromQL template; `scoped_by` lists the scope labels its metrics carry."""

    name: str
    title: str
    unit: str
    template: str
    scoped_by: tuple[str, ...] = _IDENTITY

    def promql(self, scope: Scope, window: Window) -> str:
        return self.template.format(sel=scope.matchers(self.scoped_by), w=window.rate_window)


def _quantiles(metric: str, sel: str = "{sel}") -> str:
    parts = [f'label_replace(histogram_quantile({q}, sum by (le) (rate({metric}_bucket{sel}[{{w}}]))), '
             f'"quantile", "{q}", "", "")' for q in ("0.5", "0.9", "0.99")]
    return " or ".join(parts)


SIGNALS: tuple[Signal, ...] = (
    Signal("tcp_connections", "TCP connections by outcome", "connections/s",
           "sum by (direction, outcome) (rate(bcgov_tcp_connections_total{sel}[{w}]))"),
    Signal("tcp_resets", "TCP resets", "resets/s", "sum by (direction) (rate(bcgov_tcp_resets_total{sel}[{w}]))"),
    Signal("tcp_retransmits", "TCP retransmits", "retransmits/s", "sum(rate(bcgov_tcp_retransmits_total{sel}[{w}]))"),
    Signal("tcp_duration_quantiles", "TCP connection duration quantiles", "seconds",
           _quantiles("bcgov_tcp_connection_duration_seconds")),
    Signal("oom_kills", "OOM kills", "kills", "sum(increase(bcgov_oom_kills_total{sel}[{w}]))"),
    Signal("process_execs", "Process execs", "execs/s", "sum(rate(bcgov_process_execs_total{sel}[{w}]))"),
    Signal("process_exits", "Process exits by status", "exits/s",
           "sum by (status) (rate(bcgov_process_exits_total{sel}[{w}]))"),
    Signal("block_io_latency", "Block I/O latency quantiles", "seconds", _quantiles("bcgov_block_io_latency_seconds")),
    Signal("runqueue_latency", "Run-queue latency quantiles", "seconds", _quantiles("bcgov_runqueue_latency_seconds")),
    Signal("tier_series_vs_budget", "Tier series vs budget", "series",
           'label_replace(sum by (tier) (bcgov_governor_tier_series{sel}), "kind", "series", "", "") or '
           'label_replace(sum by (tier) (bcgov_governor_tier_budget_series{sel}), "kind", "budget", "", "")',
           scoped_by=("tier",)),
)
