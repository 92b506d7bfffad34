"""block_io and runqueue on the real kernel: direct I/O on a loop device made for the test and
a CPU-bound pair pinned to one CPU, each from a process in a cgroup made for the test; the
in-kernel histograms, then the agent's /metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import RunningAgent, wait_for
from prometheus_client import CollectorRegistry, generate_latest

from agent.identity.pod_enricher import IdentityEnricher
from agent.identity.resolver import IdentityResolver, UnresolvedCounts
from agent.identity.tiers import TierResolver
from agent.metrics.collectors import ProbeMetrics
from probes import registry
from probes.block_io import OPS
from probes.families import HistogramFamily

pytestmark = pytest.mark.ebpf

WORKLOAD = str(Path(__file__).with_name("latency_workload.py"))
N_BLOCKS = 61  # prime: a count that cannot happen by accident


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        out.append((dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)))
    return out


def _kernel_hists(agent: RunningAgent, probe: str, table: str, match) -> list[tuple[object, list[int], int]]:
    bpf = agent.agent.probes[probe].bpf
    return [(k, list(v.slots), v.sum_ns) for k, v in bpf[table].items() if match(k)]


def test_direct_io_on_a_loop_device_fills_the_cgroups_block_histogram(running_agent: RunningAgent, cgroup, loop_device: str) -> None:
    rdev = os.stat(loop_device).st_rdev
    kdev = (os.major(rdev) << 20) | os.minor(rdev)  # the kernel's dev_t, as the tracepoints carry it
    name = Path(loop_device).name

    result = cgroup.run_argv([sys.executable, WORKLOAD, "dio", loop_device, str(N_BLOCKS)])
    assert result.returncode == 0, result.stderr

    # O_DIRECT waits for each completion, so every request is in the map once the process is gone
    hists = _kernel_hists(running_agent, "block_io", "block_io_latency", lambda k: k.dev == kdev and k.cgroup_id == cgroup.id)
    by_op = {OPS[k.op]: (sum(slots), sum_ns) for k, slots, sum_ns in hists}
    plan = running_agent.agent.probes["block_io"].plan
    if "HAVE_IO_START" in plan.defines:
        # attributed where the process submitted each request: every one is this cgroup's
        assert by_op["write"][0] == N_BLOCKS and by_op["read"][0] == N_BLOCKS
    else:
        assert by_op["write"][0] > 0 and by_op["read"][0] > 0
    assert all(sum_ns > 0 for _, sum_ns in by_op.values())

    text = running_agent.scrape(openmetrics=False)
    counts = {s[0]["op"]: s[1] for s in _samples(text, "bcgov_block_io_latency_seconds_count") if s[0]["device"] == name}
    assert counts["write"] >= by_op["write"][0] and counts["read"] >= by_op["read"][0]
    (write,) = [s for s in _samples(text, "bcgov_block_io_latency_seconds_count") if s[0]["device"] == name and s[0]["op"] == "write"]
    assert write[0]["mount"] == "" and write[0]["pvc"] == ""  # a loop device nobody mounted
    inf = [v for lab, v in _samples(text, "bcgov_block_io_latency_seconds_bucket")
           if lab["device"] == name and lab["op"] == "write" and lab["le"] == "+Inf"]
    assert inf == [counts["write"]]
    sums = [v for lab, v in _samples(text, "bcgov_block_io_latency_seconds_sum") if lab["device"] == name and lab["op"] == "write"]
    assert sums and sums[0] > 0
    # the scrape drained what it exported: the kernel map keeps only what is new
    assert _kernel_hists(running_agent, "block_io", "block_io_latency", lambda k: k.dev == kdev and k.cgroup_id == cgroup.id) == []


def _contend(cgroup, seconds: float = 0.4) -> dict:
    result = cgroup.run_argv([sys.executable, WORKLOAD, "contend", str(seconds)])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _runq_for(agent: RunningAgent, cgroup_id: int) -> list[int]:
    """The cgroup's slots once its delays are attributed (at each task's next switch-out)."""
    def ready() -> list[int] | None:
        hists = _kernel_hists(agent, "runqueue", "runqueue_latency", lambda k: int(getattr(k, "value", k)) == cgroup_id)
        return hists[0][1] if hists else None

    return wait_for(ready, what="a run-queue histogram for the test cgroup")


def test_a_cpu_bound_pair_on_one_cpu_waits_in_the_run_queue(running_agent: RunningAgent, cgroup) -> None:
    _contend(cgroup)
    slots = _runq_for(running_agent, cgroup.id)
    assert sum(slots) > 10
    # each spinner waits while the other runs its time slice (~1 ms or more), so some waits are
    # far longer than an idle CPU's wakeup latency: slot 9 and up is 256 us and more
    assert sum(slots[9:]) > 0, slots

    text = running_agent.scrape(openmetrics=False)
    m = re.search(r"^bcgov_runqueue_latency_seconds_count (\S+)$", text, re.M)  # no identity labels here
    assert m and float(m.group(1)) >= sum(slots)
    assert not _kernel_hists(running_agent, "runqueue", "runqueue_latency", lambda k: int(getattr(k, "value", k)) == cgroup.id)


class _Paths:
    """Stand-in for the cgroup2 tree walk (tested in tests/agent/identity): the test cgroup's id
    -> a systemd service path, so the real resolver names a workload for it."""

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths

    def path_for(self, cgroup_id: int) -> str | None:
        return self.paths.get(cgroup_id)


def test_run_queue_latency_carries_the_workload_of_its_cgroup(running_agent: RunningAgent, cgroup) -> None:
    _contend(cgroup)
    kernel = sum(_runq_for(running_agent, cgroup.id))
    resolver = IdentityResolver(_Paths({cgroup.id: "/system.slice/etl-runner.service"}), None, TierResolver({}),
                                UnresolvedCounts(), node="test")
    reg = CollectorRegistry()
    # a second collector over the session agent's probes: it drains what the agent's would have
    reg.register(ProbeMetrics(registry.ALL, running_agent.agent.probes, IdentityEnricher(resolver), kinds=(HistogramFamily,)))
    text = generate_latest(reg).decode()
    (sample,) = [s for s in _samples(text, "bcgov_runqueue_latency_seconds_count") if s[0]["workload"] == "etl-runner.service"]
    assert sample[0] == {"namespace": "", "pod": "", "workload": "etl-runner.service", "tier": ""}
    assert sample[1] >= kernel
