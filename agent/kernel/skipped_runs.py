"""Runs of the probes' BPF programs that the kernel skipped, read from each program's fdinfo.

A tracepoint program is not run when another BPF program (ours or a neighbour's: Cilium, Falco,
a second tracer) is already running on that CPU, e.g. when a softirq state change interrupts it;
a raw tracepoint program only when it interrupts itself. The kernel counts every such skip in the
program's `recursion_misses` (/proc/self/fdinfo/<fd>, kernel 5.12+; also in BPF_OBJ_GET_INFO_BY_FD's
bpf_prog_info), always, with or without `bpf_stats`. A skipped run emits nothing and counts
nothing, so it is the third term of the agent's loss accounting:
received + lost (ring buffer full) + skipped = emitted, where "emitted" is what the probes would
have sent had every run happened.

Exported as `bcgov_agent_bpf_recursion_misses_total{probe,program}`; `program` names the hook:
`sock:inet_sock_set_state` for a tracepoint program, `raw:inet_sock_set_state` for a raw one.
A kernel without the field (before 5.12) exports nothing for it: absent, not zero.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.identity.enricher import Enricher
from agent.metrics.kernel import _Cumulative, _summed, drain
from agent.kernel.loader import LoadedProbe
from agent.selfcost.overhead import program_fds, read_fdinfo
from agent.metrics.series_guard import SeriesGuard
from probes import tcp_lifecycle

FDINFO_DIR = "/proc/self/fdinfo"
FIELD = "recursion_misses"


def hook_name(bcc_function: str) -> str:
    """The hook a BCC function name stands for: `tracepoint__sock__inet_sock_set_state` ->
    `sock:inet_sock_set_state`, `raw_tracepoint__sched_switch` -> `raw:sched_switch`; other names as is."""
    if bcc_function.startswith("tracepoint__"):
        category, _, event = bcc_function[len("tracepoint__"):].partition("__")
        return f"{category}:{event}" if event else bcc_function
    for prefix in ("raw_tracepoint__", "bcgov_raw__"):  # BCC's autoloaded name, ours (ProbeSpec.raw_tracepoints)
        if bcc_function.startswith(prefix):
            return "raw:" + bcc_function[len(prefix):]
    return bcc_function


def recursion_misses(probes: Mapping[str, LoadedProbe], fdinfo_dir: str = FDINFO_DIR) -> dict[tuple[str, str], int]:
    """(probe, hook) -> runs the kernel skipped, for every loaded program whose fdinfo has the field."""
    out: dict[tuple[str, str], int] = {}
    for name, probe in list(probes.items()):
        if probe.bpf is None:
            continue
        for func, fd in program_fds(probe.bpf).items():
            try:
                info = read_fdinfo(fd, fdinfo_dir)
            except OSError:  # closed between listing and reading: the probe is going away
                continue
            if FIELD in info:
                key = (name, hook_name(func))
                out[key] = out.get(key, 0) + int(info[FIELD])
    return out


def skipped_total(probes: Mapping[str, LoadedProbe], fdinfo_dir: str = FDINFO_DIR) -> int:
    """Every skipped run of every loaded probe: the `skipped` of received + lost + skipped = emitted."""
    return sum(recursion_misses(probes, fdinfo_dir).values())


class SkippedRunsCollector(Collector):
    """`bcgov_agent_bpf_recursion_misses_total{probe,program}`, read at scrape."""

    def __init__(self, probes: Mapping[str, LoadedProbe], fdinfo_dir: str = FDINFO_DIR) -> None:
        self._probes = probes
        self._fdinfo = fdinfo_dir

    def collect(self) -> Iterable[Metric]:
        fam = CounterMetricFamily(
            "bcgov_agent_bpf_recursion_misses",
            "Runs of this BPF program the kernel skipped because another BPF program was running on the CPU "
            "(recursion_misses): whatever that run would have counted or sent is missing.",
            labels=["probe", "program"],
        )
        for (probe, program), n in sorted(recursion_misses(self._probes, self._fdinfo).items()):
            fam.add_metric([probe, program], float(n))
        yield fam


#: probe -> (its per-CPU repair counter array, the name of each slot), as in the probes' C
REPAIRS = {
    "tcp_lifecycle": ("tcp_skip_repairs", ("close_finished", "open_tracked", "established_marked", "retransmit_counted",
                                           "reset_received_marked", "reset_sent_marked")),
    "runqueue": ("wakeup_repairs", ("wakeup_marked", "wakeup_task_unknown")),
}


class SkippedClosesCollector(Collector):
    """What tcp_lifecycle's raw tracepoint repaired after a skipped tracepoint run, read at scrape:

    - `bcgov_tcp_skipped_closes_total{direction, <workload labels>}`: connections whose close run
      the kernel skipped, which the raw program then finished (counted in bcgov_tcp_connections_total,
      duration in the histogram, record from the endpoints of their last state change), by owner;
    - `bcgov_agent_skip_repairs_total{probe, repair}`: what the probes' raw programs fixed
      (tcp_lifecycle: skipped closes finished, opens tracked, ESTABLISHED marked, retransmits and resets
      counted on the span; runqueue: wakeups marked,
      and wakeups of a task never seen before, which cannot be).
    """

    def __init__(self, probes: Mapping[str, LoadedProbe], enricher: Enricher, guard: SeriesGuard | None = None,
                 taps: list[Callable[[str, Any, int], None]] | None = None) -> None:
        self._probes = probes
        self._enricher = enricher
        self._closes = _Cumulative(
            "bcgov_tcp_skipped_closes",
            "TCP connections whose close the kernel skipped running the probe for (another BPF program was running "
            "on the CPU), finished by the probe's raw tracepoint instead (also in bcgov_tcp_connections_total).",
            ["direction", *enricher.label_names], guard or SeriesGuard(),
        )
        #: shared with KernelCollector.taps: raw drained entries, for tests that count one cgroup exactly
        self.taps = taps if taps is not None else []
        self._lock = threading.Lock()

    def forget(self, released: Mapping[str, Iterable[Any]]) -> None:
        """Drop the series of pods the guard released (PodSeriesExpiry)."""
        with self._lock:
            if self._closes.name in released:
                self._closes.forget(released[self._closes.name])

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            p = self._probes.get("tcp_lifecycle")
            if p is not None and p.bpf is not None:
                entries = drain(p.bpf["tcp_skipped_closes"])
                for tap in self.taps:
                    for k, n in entries:
                        tap("tcp_skipped_closes", k, n)
                self._closes.add_all(_summed(
                    ((tcp_lifecycle.DIRECTIONS.get(k.direction, "unknown"), *self._enricher.workload_labels(k.cgroup_id)), n)
                    for k, n in entries))
                yield self._closes.family()
            repairs = CounterMetricFamily(
                "bcgov_agent_skip_repairs",
                "Fixes made by a probe's raw tracepoint after the kernel skipped its tracepoint program.",
                labels=["probe", "repair"],
            )
            for name, (table, slots) in REPAIRS.items():
                q = self._probes.get(name)
                if q is None or q.bpf is None:
                    continue
                counts = q.bpf[table]
                for idx, slot in enumerate(slots):
                    repairs.add_metric([name, slot], float(sum(counts[idx])))
            yield repairs
