"""The span budget on the real kernel (tcp_lifecycle.bpf.c span_budget): a bucket of B tokens that
does not refill during the test, a prime number of connections above it. Every connection is
counted and timed in the kernel; the bucket grants exactly B records node-wide; the test cgroup's
spans plus its withheld records equal its connection ends exactly; a refused and a reset
connection (always sent) keep their spans; with the budget off every connection is a span again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from agent_harness import CgroupIdentity, RunningAgent, started_agent, wait_for
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from agent.kernel_metrics import STAT_LOST

pytestmark = pytest.mark.ebpf

N = 29      # connections (two ends each): prime, a count that cannot happen by accident
BURST = 11  # tokens: fewer than 2 * N, so the budget must bite
HOUR = 1 / 3600  # spans per second: no refill while the test runs


@pytest.fixture
def budget_agent(tmp_path: Path) -> Iterator[RunningAgent]:
    from agent.runtime import AgentParts

    with started_agent(tmp_path, AgentParts(enricher=CgroupIdentity()), probes=["tcp_lifecycle"],
                       span_budget_per_second=1000.0) as agent:
        yield agent


def _samples(agent: RunningAgent) -> list[Any]:
    return [s for f in text_string_to_metric_families(agent.scrape(openmetrics=True)) for s in f.samples]


def _value(samples: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _spans(agent: RunningAgent, port: int) -> list[dict[str, Any]]:
    return [s for s in agent.spans() if s["attrs"].get("server.port") == port]


def test_budget_sends_at_most_its_tokens_and_counts_every_record_not_sent(budget_agent: RunningAgent, cgroup) -> None:
    agent = budget_agent
    sampling = agent.agent.kernel_sampling
    assert sampling is not None
    assert agent.agent.probes["tcp_lifecycle"].bpf["span_budget"][0].token_ns == 1_000_000  # 1000/s as configured
    lost_before = agent.agent.probes["tcp_lifecycle"].stat(STAT_LOST)
    withheld_metric_before = _value(_samples(agent), "bcgov_agent_spans_withheld_total")

    sampling.apply_budget(HOUR, BURST)  # full bucket of BURST, next token in an hour
    granted_before, withheld_before = sampling.budget_counts()
    done = cgroup.run("tcp", str(N))
    assert done.returncode == 0, done.stderr
    port = json.loads(done.stdout)["port"]
    reset = json.loads(cgroup.run("reset").stdout)
    refused = json.loads(cgroup.run("refused").stdout)
    assert refused["refused"]

    # Always sent, budget spent or not; once the refused span is written, every earlier record has been read.
    wait_for(lambda: _spans(agent, refused["port"]), what="the refused connection's span")
    wait_for(lambda: len(_spans(agent, reset["port"])) == 2, what="both spans of the reset connection")
    granted, withheld = sampling.budget_counts()
    mine = str(cgroup.id)
    samples = _samples(agent)

    # Counted == made, and timed, for every connection end.
    for direction in ("active", "passive"):
        assert _value(samples, "bcgov_tcp_connections_total", cgroup=mine, direction=direction, outcome="normal") == N
        assert _value(samples, "bcgov_tcp_connection_duration_seconds_count", cgroup=mine, direction=direction,
                      outcome="normal") == N
    # The bucket granted exactly its tokens, node-wide (other traffic on the node may have taken some).
    assert granted - granted_before == BURST
    assert agent.agent.probes["tcp_lifecycle"].stat(STAT_LOST) == lost_before  # no record lost to a full ring
    # This cgroup: spans + withheld == its connection ends, exactly; at most BURST spans.
    spans = _spans(agent, port)
    withheld_mine = sampling.withheld_by_cgroup().get(cgroup.id, 0)
    assert len(spans) + withheld_mine == 2 * N
    assert len(spans) <= BURST and withheld_mine >= 2 * N - BURST
    assert all(s.get("status", {}).get("code", 0) != 2 for s in spans)  # normal ones only on this port
    # The node's count of records not sent includes ours, and is what /metrics says.
    assert withheld - withheld_before >= withheld_mine
    assert _value(_samples(agent), "bcgov_agent_spans_withheld_total") - withheld_metric_before >= withheld_mine
    assert _value(samples, "bcgov_agent_span_budget_per_second") == pytest.approx(HOUR)

    # One line away: no budget, every connection a span.
    sampling.apply_budget(0)
    again = cgroup.run("tcp", str(N))
    assert again.returncode == 0, again.stderr
    port2 = json.loads(again.stdout)["port"]
    wait_for(lambda: len(_spans(agent, port2)) == 2 * N, what=f"all {2 * N} spans with the budget off")
    assert sampling.withheld_by_cgroup().get(cgroup.id, 0) == withheld_mine
