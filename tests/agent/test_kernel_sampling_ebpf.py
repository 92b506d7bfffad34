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


M = 101  # prime: loopback connections, each closing two sockets (connect and accept ends)


def test_the_loaded_probe_sends_only_what_the_real_sampler_keeps() -> None:
    """The real KernelSpanSampling writes a keep ratio of 1/2 into the real probe: every record
    of ours that still arrives is one SpanSampler.keep keeps (the kernel's hash is the sampler's),
    and each of ours that did not arrive is counted as sampled out."""
    import ctypes
    import socket
    import time

    from agent.kernel import loader, preflight
    from agent.kernel.sampling import KernelSpanSampling
    from agent.kernel.tracefs import Tracefs
    from agent.pipeline.sampling import SpanSampler
    from probes import registry

    spec = registry.get("tcp_lifecycle")
    probe = loader.load(loader.plan(spec, Tracefs(preflight.check())))
    try:
        sampler = SpanSampler(ratio=0.5, slow_seconds=60.0)
        sampling = KernelSpanSampling(probe)
        sampler.subscribe(sampling.apply)
        assert probe.bpf["span_sampling"][0].keep_below == 1 << 31
        arrived: list[Any] = []
        probe.bpf[spec.ring_buffer].open_ring_buffer(
            lambda _ctx, data, size: arrived.append(spec.decoder(ctypes.string_at(data, size))) or 0)
        before = sampling.sampled_out()
        # All open at once, then all closed: 2M distinct sockets (a loop of connect-close may get
        # the same few socket addresses back), whose hashes spread over 0..2^32.
        with socket.create_server(("127.0.0.1", 0), backlog=M) as srv:
            port = srv.getsockname()[1]
            ends = []
            for _ in range(M):
                ends.append(socket.create_connection(("127.0.0.1", port)))
                ends.append(srv.accept()[0])
            for end in ends:
                end.close()
        ours: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe.bpf.ring_buffer_consume()
            ours = [e for e in arrived if port in (e.local_port, e.remote_port)]
            if len(ours) + sampling.sampled_out() - before >= 2 * M:
                break
            time.sleep(0.05)
        assert ours and all(e.outcome == "normal" and not e.retransmits for e in ours)
        assert all(sampler.keep(e) for e in ours)  # the kernel sent nothing the sampler drops
        assert len(ours) < 2 * M  # ... and held some back: 2M fair coins all heads is 2^-202
        # every one of ours not sent was counted (others' normal connections may add to the count)
        assert sampling.sampled_out() - before >= 2 * M - len(ours)
    finally:
        probe.close()
