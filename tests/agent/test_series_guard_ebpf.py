"""The cardinality guard on the real kernel: resets to 5x a budget's worth of distinct peers (the
tcp_reset probe counts them per 4-tuple in the kernel) leave exactly budget + 1 series exposed and
an exact overflow count; series of expired peer pods go and free their slots.

Peers are pods at 127.0.0.10-59 (all of 127/8 is loopback) in a real PodCache fed watch events;
each refused connect to one makes a reset *sent* from the pod's address and one *received* from
it, so 50 peers are 100 distinct label sets of bcgov_tcp_resets."""

from __future__ import annotations

import io
import socket
import types
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.ebpf

BUDGET = 10
N_PEERS = 5 * BUDGET
GRACE = 60.0
RESETS = "bcgov_tcp_resets"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _peer(i: int, ip: str) -> object:
    from agent.identity.pods import PodInfo

    return PodInfo(
        uid=str(uuid.uuid4()), namespace="guard-test", name=f"peer-{i}-abc12", node="node-a", ips=(ip,),
        labels=types.MappingProxyType({}), workload_kind="Deployment", workload_name=f"peer-{i}",
        containers=types.MappingProxyType({}), phase="Running",
    )


def _refused(ip: str) -> None:
    probe = socket.socket()
    probe.bind((ip, 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: the SYN gets a RST
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, port), timeout=5).close()


@pytest.fixture
def guarded_agent(tmp_path: Path) -> Iterator[tuple[object, object, Clock, str]]:
    from agent.config import AgentConfig
    from agent.identity.cgroups import CgroupPathCache
    from agent.identity.pod_enricher import IdentityEnricher
    from agent.identity.pods import PodCache
    from agent.identity.resolver import IdentityResolver
    from agent.identity.tiers import TierResolver
    from agent.kernel import preflight
    from agent.kernel.tracefs import Tracefs
    from agent.runtime import Agent, AgentParts

    clock = Clock()
    pods = PodCache("node-a", grace_period=GRACE, clock=clock)
    pods.available = True  # fed by apply() in the test rather than by a watch thread
    # No well-known ports: other traffic on this machine then only ever has the empty identity.
    enricher = IdentityEnricher(IdentityResolver(CgroupPathCache(), pods, TierResolver({"default_ports": False})), pods)
    cfg = AgentConfig(
        metrics_addr="127.0.0.1:0", probes=["tcp_reset"], spans_file=str(tmp_path / "spans.jsonl"),
        series_budgets={RESETS: BUDGET},
    )
    cfg.validate()
    parts = AgentParts(enricher=enricher, event_stream=io.StringIO())
    agent = Agent(cfg, Tracefs(preflight.check()), parts)
    try:
        agent.start()
        host, port = agent._server.address
        yield agent, pods, clock, f"http://{host}:{port}/metrics"
    finally:
        agent.stop()


def _scrape(url: str) -> tuple[dict[tuple[tuple[str, str], ...], float], float]:
    """bcgov_tcp_resets_total series and the overflow counter for it."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    series, overflow = {}, 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == RESETS + "_total":
                series[tuple(sorted(s.labels.items()))] = s.value
            elif s.name == "bcgov_agent_series_overflow_total" and s.labels == {"metric": RESETS}:
                overflow = s.value
    return series, overflow


def _is_overflow(labels: tuple[tuple[str, str], ...]) -> bool:
    return all(v == "__overflow__" for _, v in labels)


def test_five_times_the_budget_of_peers_exposes_budget_plus_one_series(guarded_agent) -> None:
    agent, pods, clock, url = guarded_agent
    assert [r.name for r in agent.reports if r.up] == ["tcp_reset"]
    peers = {}
    for i in range(N_PEERS):
        ip = f"127.0.0.{10 + i}"
        peers[ip] = _peer(i, ip)
        pods.apply("ADDED", peers[ip])

    # Resets of anything that is not one of the peers carry the empty identity: admit those two
    # label sets (sent, received) first, so other traffic on this machine adds no new label set.
    _refused("127.0.0.1")
    wait_for(lambda: sum(1 for k in _scrape(url)[0] if not _is_overflow(k)) == 2, what="the two empty-identity series")
    assert agent.guard.admitted(RESETS) == 2

    for ip in peers:
        _refused(ip)
    series, overflow = wait_for(lambda: (s := _scrape(url)) and s[1] > 0 and s, what="the overflow counter")
    ours = 2 * N_PEERS
    admitted_ours = BUDGET - 2
    assert len(series) == BUDGET + 1
    assert overflow == ours - admitted_ours
    ((ovf_labels, ovf_value),) = [(k, v) for k, v in series.items() if _is_overflow(k)]
    assert ovf_value == ours - admitted_ours  # one reset per folded label set, summed exactly
    peer_series = {k: v for k, v in series.items() if any(v_.startswith("peer-") for _, v_ in k)}
    assert len(peer_series) == admitted_ours and set(peer_series.values()) == {1.0}

    # Pods deleted: after the grace period their series go and their slots are free again.
    for p in peers.values():
        pods.apply("DELETED", p)
    clock.now += GRACE
    series, overflow = _scrape(url)
    assert not [k for k in series if any(v.startswith("peer-") for _, v in k)]
    assert agent.guard.admitted(RESETS) == 2
    assert overflow == ours - admitted_ours  # a counter: what was folded stays counted
    late = _peer(99, "127.0.0.99")
    pods.apply("ADDED", late)
    _refused("127.0.0.99")
    wait_for(lambda: sum(1 for k in _scrape(url)[0] if ("workload", "peer-99") in k or ("peer_workload", "peer-99") in k) == 2,
             what="the new peer's series admitted into freed slots")
    series, overflow = _scrape(url)
    assert overflow == ours - admitted_ours and len(series) == 2 + 2 + 1
