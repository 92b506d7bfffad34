"""The agent's own cost, measured and enforced.

- `BpfStats` turns on the kernel's per-program run-time accounting for the agent's lifetime
  (off by default: it is node-wide and adds a clock read to every BPF program on the node).
- `BpfCostCollector` exports `bcgov_agent_bpf_run_seconds_total{probe}` and
  `bcgov_agent_bpf_runs_total{probe}` from `/proc/self/fdinfo` of each probe's program fds.
- `CpuBudget` watches the agent's own CPU and, over budget, sheds span work (never the in-kernel
  metrics) by lowering the span sampler's keep ratio for normal, fast connections.

`cpu_budget` is off by default: shedding loses traces, which is the operator's trade-off to make,
and the process CPU it watches includes whatever else runs in the agent's process (an embedder,
a test run). A homelab node might set 0.05-0.25 cores (5-25 % of one core; see bench/README.md for
what the agent costs per connection).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from agent.kernel.loader import LoadedProbe

log = logging.getLogger("bcgov.agent.selfcost.overhead")

SYSCTL_PATH = "/proc/sys/kernel/bpf_stats_enabled"
_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}
_BPF_ENABLE_STATS = 32  # bpf(2) command, kernel 5.8+
_BPF_STATS_RUN_TIME = 0


class BpfStats:
    """Kernel BPF run-time statistics, on while the agent runs.

    Prefers `bpf(BPF_ENABLE_STATS)`: the kernel keeps stats on while the returned fd is open, counts
    its holders, and turns them off by itself if the agent dies. Falls back to the
    `kernel.bpf_stats_enabled` sysctl on older kernels, and then puts back the value it found.
    """

    def __init__(self, sysctl_path: str = SYSCTL_PATH, use_syscall: bool = True) -> None:
        self._sysctl = sysctl_path
        self._use_syscall = use_syscall
        self._fd: int | None = None
        self._previous: str | None = None

    @property
    def how(self) -> str:
        """'syscall', 'sysctl' or '' (not enabled by us)."""
        return "syscall" if self._fd is not None else "sysctl" if self._previous is not None else ""

    def enable(self) -> bool:
        """Turn stats on; False (with one log line naming why) when the kernel refuses."""
        if self._use_syscall and self._enable_by_syscall():
            return True
        try:
            with open(self._sysctl, encoding="ascii") as fh:
                previous = fh.read().strip()
            if previous != "1":
                with open(self._sysctl, "w", encoding="ascii") as fh:
                    fh.write("1\n")
            self._previous = previous
            return True
        except OSError as exc:
            log.warning("bpf_stats: cannot enable kernel BPF stats (%s: %s); run as root or set bpf_stats: false",
                        self._sysctl, exc.strerror)
            return False

    def _enable_by_syscall(self) -> bool:
        nr = _BPF_SYSCALL.get(platform.machine())
        if nr is None:
            return False
        libc = ctypes.CDLL(None, use_errno=True)
        attr = (ctypes.c_uint32 * 4)(_BPF_STATS_RUN_TIME, 0, 0, 0)
        fd = libc.syscall(nr, _BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
        if fd < 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOSYS):  # older kernels: the sysctl may still work
                log.debug("BPF_ENABLE_STATS failed: %s", os.strerror(err))
            return False
        self._fd = fd
        return True

    def restore(self) -> None:
        """Undo `enable()`; safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._previous is not None:
            try:
                with open(self._sysctl, "w", encoding="ascii") as fh:
                    fh.write(self._previous + "\n")
            except OSError as exc:
                log.warning("bpf_stats: cannot restore %s to %s: %s", self._sysctl, self._previous, exc.strerror)
            self._previous = None


def read_fdinfo(fd: int, fdinfo_dir: str = "/proc/self/fdinfo") -> dict[str, str]:
    """The `key: value` lines of one fd's fdinfo (for a BPF program: run_time_ns, run_cnt, ...)."""
    out: dict[str, str] = {}
    with open(os.path.join(fdinfo_dir, str(fd)), encoding="ascii") as fh:
        for line in fh:
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
    return out


def program_fds(bpf: Any) -> dict[str, int]:
    """Program name -> fd of every program BCC loaded for one probe (BCC keeps them in `funcs`)."""
    funcs = getattr(bpf, "funcs", {}) or {}
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(fn.fd) for k, fn in funcs.items()}


class BpfCostCollector(Collector):
    """Kernel run time and run count of each probe's programs, summed per probe, read at scrape."""

    def __init__(self, probes: Mapping[str, LoadedProbe], fdinfo_dir: str = "/proc/self/fdinfo") -> None:
        self._probes = probes
        self._fdinfo = fdinfo_dir

    def per_program(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(probe, program) -> (run_time_ns, run_cnt) for every loaded program."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for name, probe in list(self._probes.items()):
            if probe.bpf is None:
                continue
            for prog, fd in program_fds(probe.bpf).items():
                try:
                    info = read_fdinfo(fd, self._fdinfo)
                except OSError:  # closed between listing and reading: the probe is going away
                    continue
                out[(name, prog)] = (int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0)))
        return out

    def per_probe(self) -> dict[str, tuple[int, int]]:
        """probe -> (run_time_ns, run_cnt) summed over its programs."""
        sums: dict[str, tuple[int, int]] = {}
        for (name, _), (ns, cnt) in self.per_program().items():
            old = sums.get(name, (0, 0))
            sums[name] = (old[0] + ns, old[1] + cnt)
        return sums

    def collect(self) -> Iterable[Metric]:
        secs = CounterMetricFamily(
            "bcgov_agent_bpf_run_seconds",
            "Time the kernel spent running this probe's BPF programs (kernel BPF stats; needs bpf_stats: true).",
            labels=["probe"],
        )
        runs = CounterMetricFamily(
            "bcgov_agent_bpf_runs", "Runs of this probe's BPF programs (kernel BPF stats; needs bpf_stats: true).", labels=["probe"]
        )
        for name, (ns, cnt) in sorted(self.per_probe().items()):
            secs.add_metric([name], ns / 1e9)
            runs.add_metric([name], float(cnt))
        yield secs
        yield runs


class SheddableSpans(Protocol):
    """What the budget turns down: the share (0..1) of normal, fast connections whose spans are
    kept. The pipeline's span sampler is one; the budget knows nothing else of the pipeline."""

    shed_keep: float


class CpuBudget:
    """Holds the agent's own CPU near `budget_cores` by shedding span work.

    Every `tick()` compares the CPU used since the last tick with the budget. Over it, the keep
    ratio for normal, fast connections' spans drops in proportion (failed, reset, retransmitted
    and slow connections keep their spans; the kernel's counters are untouched). Well under it
    (below `recover_below` of the budget) the ratio doubles back towards 1. One log line when
    shedding starts and one when it stops.
    """

    MIN_KEEP = 1 / 1024  # below this, keep none: the remaining work is the metrics themselves

    def __init__(
        self,
        budget_cores: float,
        sampler: SheddableSpans,
        read_cpu_seconds: Callable[[], float] = time.process_time,
        monotonic: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
        recover_below: float = 0.7,
    ) -> None:
        if budget_cores <= 0:
            raise ValueError(f"cpu_budget must be > 0 cores (e.g. 0.05 for 5% of one core), not {budget_cores}")
        self.budget = budget_cores
        self._sampler = sampler
        self._cpu = read_cpu_seconds
        self._now = monotonic
        self._recover_below = recover_below
        self._last = (self._now(), self._cpu())
        self.usage = 0.0
        self.shedding = False
        self._shedding_gauge = Gauge(
            "bcgov_agent_span_shedding", "1 while the agent is over its CPU budget and sheds span work.", registry=registry
        )
        self._keep_gauge = Gauge(
            "bcgov_agent_span_keep_ratio",
            "Share of normal, fast connections whose span the CPU budget lets through (1 = no shedding).",
            registry=registry,
        )
        self._usage_gauge = Gauge("bcgov_agent_cpu_usage_cores", "Agent CPU over the last budget window, in cores.", registry=registry)
        budget_gauge = Gauge("bcgov_agent_cpu_budget_cores", "Configured agent CPU budget, in cores.", registry=registry)
        budget_gauge.set(budget_cores)
        self._keep_gauge.set(1.0)

    @property
    def keep(self) -> float:
        return self._sampler.shed_keep

    def tick(self) -> None:
        """Measure the window since the last tick and adjust the keep ratio."""
        now, cpu = self._now(), self._cpu()
        elapsed = now - self._last[0]
        if elapsed <= 0:
            return
        self.usage = max(0.0, cpu - self._last[1]) / elapsed
        self._last = (now, cpu)
        keep = self._sampler.shed_keep
        if self.usage > self.budget:
            # Proportional cut, at least 10 % and at most 90 % per window, so it converges quickly
            # without dropping everything on one noisy window.
            keep *= min(0.9, max(0.1, self.budget / self.usage))
            if keep < self.MIN_KEEP:
                keep = 0.0
        elif self.usage < self.budget * self._recover_below and keep < 1.0:
            keep = min(1.0, max(keep * 2, self.MIN_KEEP * 2))
        self._set(keep)

    def _set(self, keep: float) -> None:
        self._sampler.shed_keep = keep
        self._keep_gauge.set(keep)
        self._usage_gauge.set(self.usage)
        shedding = keep < 1.0
        if shedding != self.shedding:
            self.shedding = shedding
            self._shedding_gauge.set(1.0 if shedding else 0.0)
            if shedding:
                log.warning(
                    "agent CPU %.3f cores is over its budget of %.3f: shedding span work (keeping %.1f%% of normal "
                    "connections' spans); metrics stay exact", self.usage, self.budget, keep * 100)
            else:
                log.info("agent CPU %.3f cores is back under its budget of %.3f: span shedding stopped", self.usage, self.budget)


class BudgetThread:
    """Ticks a `CpuBudget` every `window_s` on its own thread until stopped."""

    def __init__(self, budget: CpuBudget, window_s: float) -> None:
        self._budget = budget
        self._window = window_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bcgov-cpu-budget", daemon=True)

    def start(self) -> None:
        """Start ticking."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._window):
            self._budget.tick()

    def stop(self) -> None:
        """Stop ticking (the keep ratio stays where it was)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._window + 1.0)
