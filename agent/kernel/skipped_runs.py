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

What a probe's raw tracepoint repaired after a skipped run is declared in its spec, like its other
families (tcp_lifecycle: bcgov_tcp_skipped_closes_total and bcgov_agent_skip_repairs_total; runqueue:
bcgov_agent_skip_repairs_total), and collected with them (agent/metrics/collectors.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.kernel.loader import LoadedProbe
from agent.selfcost.overhead import program_fds, read_fdinfo

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
