"""The enforced overhead budget on the real kernel: a real agent held to a tiny CPU budget under real
loopback connections sheds span work, while the kernel's connection count stays exact; the
kernel's BPF stats reach /metrics per probe and are switched off again at stop."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import RunningAgent, started_agent, wait_for
from cgroups import WORKLOAD

from probes.families import STAT_EMITTED, STAT_LOST

pytestmark = pytest.mark.ebpf

N_CONNECTIONS = 997  # prime: a count that cannot happen by accident
SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


@pytest.fixture
def budget_agent(tmp_path: Path) -> Iterator[RunningAgent]:
    with started_agent(tmp_path, probes=["tcp_lifecycle"], cpu_budget=0.001, cpu_budget_window=0.2, bpf_stats=True) as agent:
        yield agent


def _sample(agent: RunningAgent, name: str, labels: dict[str, str] | None = None) -> float:
    value = agent.agent.parts.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def _caught_up(agent: RunningAgent) -> bool:
    probe = agent.agent.probes["tcp_lifecycle"]
    return agent.agent.instruments.received_count("tcp_lifecycle") + probe.stat(STAT_LOST) >= probe.stat(STAT_EMITTED)


def test_over_budget_sheds_spans_and_keeps_kernel_counts_exact(budget_agent: RunningAgent, cgroup) -> None:
    agent = budget_agent.agent
    sysctl_before = SYSCTL.read_text()

    def warm() -> bool:
        # Load from outside the test cgroup until the controller has seen the agent over budget.
        subprocess.run([sys.executable, str(WORKLOAD), "tcp", "97"], check=True, capture_output=True, timeout=60)
        return agent.cpu_budget is not None and agent.cpu_budget.shedding

    wait_for(warm, timeout=60, what="the CPU budget to start shedding")
    wait_for(lambda: _caught_up(budget_agent), what="the reader to catch up with the warm-up")
    sampled_before = _sample(budget_agent, "bcgov_agent_spans_sampled_out_total")

    result = cgroup.run("tcp", str(N_CONNECTIONS))
    assert result.returncode == 0, result.stderr
    port = json.loads(result.stdout)["port"]
    wait_for(lambda: _caught_up(budget_agent), what="the reader to catch up with the measured load")
    text = budget_agent.scrape()

    def counted(direction: int) -> int:
        return budget_agent.kernel_count(
            "tcp_lifecycle", "tcp_connections", lambda k: k.cgroup_id == cgroup.id and k.direction == direction and k.outcome == 0
        )

    # In-kernel metrics are never shed: exact, both ends.
    assert counted(1) == N_CONNECTIONS and counted(2) == N_CONNECTIONS
    assert agent.probes["tcp_lifecycle"].stat(STAT_LOST) == 0
    assert "bcgov_agent_span_shedding 1.0" in text
    assert "bcgov_agent_cpu_budget_cores 0.001" in text
    runs = _sample(budget_agent, "bcgov_agent_bpf_runs_total", {"probe": "tcp_lifecycle"})
    secs = _sample(budget_agent, "bcgov_agent_bpf_run_seconds_total", {"probe": "tcp_lifecycle"})
    assert runs >= 2 * N_CONNECTIONS and secs > 0  # several tracepoint hits per connection end
    assert _sample(budget_agent, "process_cpu_seconds_total") > 0
    assert _sample(budget_agent, "process_resident_memory_bytes") > 0

    sampled = _sample(budget_agent, "bcgov_agent_spans_sampled_out_total") - sampled_before
    agent.stop()  # flushes the span queue; the kernel side was read above
    spans = [s for s in budget_agent.spans() if s["attrs"].get("server.port") == port]
    assert len(spans) < 2 * N_CONNECTIONS
    # Every connection end without a span was counted as sampled out (other traffic on the node
    # may add to the counter, never subtract).
    assert sampled >= 2 * N_CONNECTIONS - len(spans)
    assert SYSCTL.read_text() == sysctl_before  # BPF stats handed back as found


def test_bpf_stats_off_by_default_exports_no_run_times(running_agent: RunningAgent) -> None:
    text = running_agent.scrape()
    assert "bcgov_agent_bpf_run_seconds" not in text
    assert "bcgov_agent_span_shedding" not in text
    assert "process_cpu_seconds_total" in text  # the agent's own CPU is always exported
