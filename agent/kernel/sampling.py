"""Span shedding and the span budget in the kernel.

- The keep ratio and slow threshold go into tcp_lifecycle's `span_sampling` map, so normal, fast
  connections whose span would be sampled out are not sent as records at all (tcp_lifecycle.bpf.c).
  Their count comes back from `tcp_sampled_out`.
- The span budget (`span_budget` map): a token bucket of `per_second` records of normal, fast
  connections per node, `burst` saved up, checked after sampling and before the ring-buffer reserve;
  optionally one more per workload (owner cgroup, `span_budget_by_cgroup`), checked first.
  Failed, refused, reset, retransmitted and slow connections never take a token. Records not sent
  for want of one are counted in `tcp_span_budget[1]` (node) and `tcp_spans_withheld` (per cgroup).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.kernel.loader import LoadedProbe

log = logging.getLogger("bcgov.agent.kernel.sampling")


class KernelSpanSampling:
    """Writes SpanSampler's decisions and the span budget into the probe's maps; reads the kernel's counts."""

    def __init__(self, probe: LoadedProbe) -> None:
        self._probe = probe
        self._lock = threading.Lock()  # the budget thread and start() may both write
        self.budget_per_second = 0.0
        self.workload_budget_per_second = 0.0

    def apply(self, ratio: float, slow_ns: int) -> None:
        """Keep `ratio` of normal, fast (< slow_ns) connections' records; 1.0 sends every record."""
        table = self._probe.bpf["span_sampling"]
        with self._lock:
            entry = table[table.Key(0)]
            entry.active = 1 if ratio < 1.0 else 0
            # SpanSampler keeps hash < ratio * 2^32; for an integer hash that is hash < ceil(...)
            entry.keep_below = min(1 << 32, math.ceil(max(0.0, ratio) * (1 << 32)))
            entry.slow_ns = slow_ns
            table[table.Key(0)] = entry

    def apply_budget(self, per_second: float, burst: int | None = None, now_ns: int | None = None) -> None:
        """At most `per_second` records of normal, fast connections per second, `burst` (default:
        one second's worth, at least 1) saved up; the bucket starts full. 0: no budget (every
        connection a span). `now_ns` is the kernel's clock (CLOCK_MONOTONIC, bpf_ktime_get_ns)."""
        if per_second < 0:
            raise ValueError(f"span budget must be >= 0 spans per second (0: no budget), not {per_second}")
        if per_second and not self.budget_enforced:
            log.warning("span_budget_per_second %g is not enforced: tcp_lifecycle was built without the span "
                        "budget (this kernel lacks BPF atomics, Linux 5.12+); every record is sent", per_second)
        table = self._probe.bpf["span_budget"]
        with self._lock:
            entry = table[table.Key(0)]
            if per_second == 0:
                entry.token_ns, entry.burst, entry.tokens = 0, 0, 0
            else:
                entry.token_ns = max(1, round(1e9 / per_second))
                entry.burst = max(1, burst if burst is not None else math.ceil(per_second))
                entry.tokens = entry.burst
            entry.last_ns = time.monotonic_ns() if now_ns is None else now_ns
            table[table.Key(0)] = entry
            self.budget_per_second = per_second if self.budget_enforced else 0.0

    @property
    def budget_enforced(self) -> bool:
        """False when the probe was built without the span budget (agent/kernel/loader.py fallback)."""
        return "BCGOV_NO_ATOMIC_FETCH" not in self._probe.plan.defines

    def apply_workload_budget(self, per_second: float, burst: int | None = None) -> None:
        """At most `per_second` records of normal, fast connections per second per workload (the
        owner's cgroup), besides the node's budget; each workload's bucket starts full. 0: none."""
        if per_second < 0:
            raise ValueError(f"per-workload span budget must be >= 0 spans per second (0: none), not {per_second}")
        table = self._probe.bpf["span_budget"]
        with self._lock:
            entry = table[table.Key(1)]
            entry.token_ns = 0 if per_second == 0 else max(1, round(1e9 / per_second))
            entry.burst = 0 if per_second == 0 else max(1, burst if burst is not None else math.ceil(per_second))
            table[table.Key(1)] = entry
            self._probe.bpf["span_budget_by_cgroup"].clear()  # buckets made under the old figures
            self.workload_budget_per_second = per_second

    def sampled_out(self) -> int:
        """Records the kernel did not send because their span was sampled out."""
        return int(sum(self._probe.bpf["tcp_sampled_out"][0]))

    def budget_counts(self) -> tuple[int, int]:
        """(records sent with a budget token, records not sent: a budget was spent), node totals."""
        table = self._probe.bpf["tcp_span_budget"]
        return int(sum(table[0])), int(sum(table[1]))

    def withheld_by_workload_budget(self) -> int:
        """Of the records not sent, those a workload's own budget stopped."""
        return int(sum(self._probe.bpf["tcp_span_budget"][2]))


class SpanBudgetCollector(Collector):
    """bcgov_agent_spans_withheld_total and bcgov_agent_span_budget_per_second, read at scrape."""

    def __init__(self, sampling: KernelSpanSampling) -> None:
        self._sampling = sampling

    def collect(self) -> Iterable[Metric]:
        _, withheld = self._sampling.budget_counts()
        by_workload = self._sampling.withheld_by_workload_budget()
        family = CounterMetricFamily(
            "bcgov_agent_spans_withheld",
            "Normal, fast connections whose record the kernel did not send because a span budget was spent "
            "(budget=node: span_budget_per_second, workload: span_budget_per_workload_per_second); metrics still "
            "count and time them.", labels=["budget"])
        family.add_metric(["node"], float(withheld - by_workload))
        family.add_metric(["workload"], float(by_workload))
        yield family
        yield GaugeMetricFamily(
            "bcgov_agent_span_budget_per_second",
            "Span budget: records of normal, fast connections the kernel sends per second at most (0: no budget).",
            value=float(self._sampling.budget_per_second))
