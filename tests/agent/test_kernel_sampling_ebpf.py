"""Span shedding in the kernel: with a keep ratio of 0 the kernel sends no record for normal, fast
connections (their counts and durations are still complete), failed ones still arrive as spans,
and every skipped record is counted in bcgov_agent_spans_sampled_out_total."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import CgroupIdentity, RunningAgent, started_agent, wait_for
from prometheus_client.openmetrics.parser import text_string_to_metric_families

pytestmark = pytest.mark.ebpf

N = 29  # prime: a count that cannot happen by accident


@pytest.fixture
def keep_nothing_agent(tmp_path: Path) -> Iterator[RunningAgent]:
    from agent.runtime import AgentParts

    with started_agent(tmp_path, AgentParts(enricher=CgroupIdentity()), probes=["tcp_lifecycle"], span_sample_ratio=0.0) as agent:
        yield agent


def _samples(agent: RunningAgent) -> list[Any]:
    return [s for f in text_string_to_metric_families(agent.scrape(openmetrics=True)) for s in f.samples]


def _value(samples: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_kernel_sends_no_record_for_sampled_out_connections(keep_nothing_agent: RunningAgent, cgroup) -> None:
    agent = keep_nothing_agent
    sampling = agent.agent.probes["tcp_lifecycle"].bpf["span_sampling"][0]
    assert sampling.active == 1 and sampling.keep_below == 0

    before = _value(_samples(agent), "bcgov_agent_spans_sampled_out_total")
    done = cgroup.run("tcp", str(N))
    assert done.returncode == 0, done.stderr
    port = json.loads(done.stdout)["port"]
    refused = json.loads(cgroup.run("refused").stdout)
    assert refused["refused"]

    # The refused connect is kept: once its span is written, every earlier record has been read.
    wait_for(lambda: [s for s in agent.spans() if s["attrs"].get("server.port") == refused["port"]],
             what="the refused connection's span")
    wait_for(lambda: [r for r in agent.logs() if r["attributes"].get("server.port") == refused["port"]],
             what="the refused connection's log line")
    mine = str(cgroup.id)
    samples = _samples(agent)
    # Every connection is counted and timed in the kernel ...
    for direction in ("active", "passive"):
        assert _value(samples, "bcgov_tcp_connections_total", cgroup=mine, direction=direction, outcome="normal") == N
        assert _value(samples, "bcgov_tcp_connection_duration_seconds_count", cgroup=mine, direction=direction,
                      outcome="normal") == N
    # ... but none of the normal ones crossed the ring buffer: no span, no log line, no record.
    assert not [s for s in agent.spans() if s["attrs"].get("server.port") == port]
    assert not [r for r in agent.logs() if r["attributes"].get("server.port") == port]
    assert agent.agent.instruments.spans_sampled_out._user == 0  # user space never saw them
    sampled = _value(samples, "bcgov_agent_spans_sampled_out_total") - before
    # Exactly ours, unless other normal, fast connections closed on this node meanwhile (each of
    # those is sampled out too, and counted normal in its own cgroup).
    others = _value(samples, "bcgov_tcp_connections_total", outcome="normal") - 2 * N
    assert 2 * N <= sampled <= 2 * N + others


def test_keep_ratio_changes_reach_the_kernel(keep_nothing_agent: RunningAgent) -> None:
    agent = keep_nothing_agent.agent
    table = agent.probes["tcp_lifecycle"].bpf["span_sampling"]
    agent.sampler.ratio = 1.0
    agent.sampler.shed_keep = 0.5   # what the CPU budget does while over budget
    entry = table[0]
    assert (entry.active, entry.keep_below, entry.slow_ns) == (1, 1 << 31, agent.sampler.slow_ns)
    agent.sampler.shed_keep = 1.0   # back under budget: every record is sent again
    assert table[0].active == 0
