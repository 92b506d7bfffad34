"""The span budget on the real kernel (tcp_lifecycle.bpf.c span_budget): a bucket of B tokens that
does not refill during the test, a prime number of connections above it. Every connection is
counted and timed in the kernel; the bucket grants exactly B records node-wide; the test cgroup's
spans plus its withheld records equal its connection ends exactly; a refused and a reset
connection (always sent) keep their spans; with the budget off every connection is a span again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import CgroupIdentity, RunningAgent, started_agent, wait_for
from bpf_test_run import run_raw
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from probes.families import STAT_LOST

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


def _withheld_by_cgroup(agent: RunningAgent) -> dict[int, int]:
    """cgroup id -> records tcp_lifecycle did not send for want of a span-budget token (its
    `tcp_spans_withheld` LRU map: the oldest cgroups may be gone)."""
    table = agent.agent.probes["tcp_lifecycle"].bpf["tcp_spans_withheld"]
    return {int(k.value): int(v.value) for k, v in table.items()}


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
    withheld_mine = _withheld_by_cgroup(agent).get(cgroup.id, 0)
    assert len(spans) + withheld_mine == 2 * N
    assert len(spans) <= BURST and withheld_mine >= 2 * N - BURST
    assert all(s.get("status", {}).get("code", 0) != 2 for s in spans)  # normal ones only on this port
    # The node's count of records not sent includes ours, and is what /metrics says.
    assert withheld - withheld_before >= withheld_mine
    assert _value(_samples(agent), "bcgov_agent_spans_withheld_total") - withheld_metric_before >= withheld_mine
    assert _value(samples, "bcgov_agent_span_budget_per_second") == pytest.approx(HOUR)
    # Exemplars still come from kept spans: each on this cgroup's normal-duration histogram is one of them.
    kept = {s["traceId"] for s in spans}
    exemplars = [x.exemplar for x in samples if x.name == "bcgov_tcp_connection_duration_seconds_bucket"
                 and x.labels.get("cgroup") == mine and x.labels.get("outcome") == "normal" and x.exemplar is not None]
    assert exemplars and all(e.labels["trace_id"] in kept for e in exemplars)

    # One line away: no budget, every connection a span.
    sampling.apply_budget(0)
    again = cgroup.run("tcp", str(N))
    assert again.returncode == 0, again.stderr
    port2 = json.loads(again.stdout)["port"]
    wait_for(lambda: len(_spans(agent, port2)) == 2 * N, what=f"all {2 * N} spans with the budget off")
    assert _withheld_by_cgroup(agent).get(cgroup.id, 0) == withheld_mine


# --- a close the raw program finishes (its tracepoint run skipped) meets the same budget ---------

TCP_ESTABLISHED, TCP_SYN_SENT, TCP_CLOSE, TCP_LAST_ACK = 1, 2, 7, 9
ACTIVE = 1


def test_a_repaired_close_is_held_to_the_same_budget(budget_agent: RunningAgent) -> None:
    agent = budget_agent
    sampling = agent.agent.kernel_sampling
    assert sampling is not None
    bpf = agent.agent.probes["tcp_lifecycle"].bpf
    raw = bpf.funcs[b"bcgov_raw__inet_sock_set_state"].fd
    sampling.apply_budget(HOUR, 1)
    bucket = bpf["span_budget"]
    entry = bucket[0]
    entry.tokens = 0  # empty, and the next token comes in an hour
    bucket[0] = entry
    granted0, withheld0 = sampling.budget_counts()
    conns = bpf["conns"]

    def open_fake(sk: int, port: int) -> int:
        """A connect whose tracepoint run was skipped, with an IPv4 server port to find its span by
        (the endpoints a tracepoint run would have remembered); its owner's cgroup id."""
        run_raw(raw, sk, 0, TCP_SYN_SENT)
        c = conns[conns.Key(sk)]
        c.family, c.dport = 2, port  # AF_INET
        conns[conns.Key(sk)] = c
        return int(c.owner.cgroup_id)

    normal, timed_out = 0xDEAD_0000_0000_B0D1, 0xDEAD_0000_0000_B0D3  # keys no socket has; never dereferenced
    normal_port, timed_out_port = 47111, 47119
    cg = open_fake(normal, normal_port)
    mine = lambda k: k.cgroup_id == cg and k.direction == ACTIVE and k.outcome == 0  # noqa: E731
    counted0 = agent.kernel_count("tcp_lifecycle", "tcp_connections", mine)
    withheld_mine0 = _withheld_by_cgroup(agent).get(cg, 0)
    run_raw(raw, normal, TCP_SYN_SENT, TCP_ESTABLISHED)
    run_raw(raw, normal, TCP_LAST_ACK, TCP_CLOSE)  # an orderly close: normal, fast
    # counted, and withheld like a tracepoint-finished close: no token
    assert agent.kernel_count("tcp_lifecycle", "tcp_connections", mine) == counted0 + 1
    assert _withheld_by_cgroup(agent).get(cg, 0) >= withheld_mine0 + 1
    # a connect that never got established (timeout) is always sent, bucket empty or not
    open_fake(timed_out, timed_out_port)
    run_raw(raw, timed_out, TCP_SYN_SENT, TCP_CLOSE)
    wait_for(lambda: _spans(agent, timed_out_port), what="the timed-out connection's span")
    granted, withheld = sampling.budget_counts()
    assert granted == granted0  # the empty bucket granted nothing
    assert withheld >= withheld0 + 1
    assert len(_spans(agent, timed_out_port)) == 1 and _spans(agent, normal_port) == []


WORKLOAD_BURST = 7


def test_a_workloads_own_budget_holds_it_to_its_tokens_whatever_the_node_does(budget_agent: RunningAgent, cgroup) -> None:
    agent = budget_agent
    sampling = agent.agent.kernel_sampling
    assert sampling is not None
    sampling.apply_budget(0)  # no node budget: only the workload's holds
    sampling.apply_workload_budget(HOUR, WORKLOAD_BURST)  # each workload's bucket starts full, no refill
    by_workload0 = sampling.withheld_by_workload_budget()
    done = cgroup.run("tcp", str(N))
    assert done.returncode == 0, done.stderr
    port = json.loads(done.stdout)["port"]
    refused = json.loads(cgroup.run("refused").stdout)
    wait_for(lambda: _spans(agent, refused["port"]), what="the refused connection's span (always sent)")
    # This cgroup's own bucket: exactly its tokens sent, the rest counted; nobody else's traffic
    # can take them (each workload has its own bucket).
    assert len(_spans(agent, port)) == WORKLOAD_BURST
    assert _withheld_by_cgroup(agent).get(cgroup.id, 0) == 2 * N - WORKLOAD_BURST
    assert sampling.withheld_by_workload_budget() - by_workload0 >= 2 * N - WORKLOAD_BURST
    samples = _samples(agent)
    assert _value(samples, "bcgov_agent_spans_withheld_total", budget="workload") >= 2 * N - WORKLOAD_BURST
    for direction in ("active", "passive"):
        assert _value(samples, "bcgov_tcp_connections_total", cgroup=str(cgroup.id), direction=direction, outcome="normal") == N
    sampling.apply_workload_budget(0)
    assert agent.agent.probes["tcp_lifecycle"].bpf["span_budget"][1].token_ns == 0
