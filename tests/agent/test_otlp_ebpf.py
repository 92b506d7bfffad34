"""Spans over the wire: a real agent (tcp_lifecycle on this kernel, real loopback traffic) ships
OTLP to a stand-in collector (tests/agent/otlp_receiver.py: the real opentelemetry-proto
messages over grpcio and over HTTP/protobuf), which then goes away and comes back."""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path

import pytest
from agent_harness import wait_for
from otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.ebpf

NODE = "node-otlp-test"
N_UP, N_DOWN, N_BACK, N_AT_STOP = 5, 7, 3, 2  # connections per phase; each makes 2 spans


def _agent(receiver: OtlpReceiver, log_path: Path):  # -> Agent
    from agent.config import AgentConfig
    from agent.kernel import preflight
    from agent.kernel.tracefs import Tracefs
    from agent.runtime import Agent, AgentParts

    cfg = AgentConfig(
        metrics_addr="off", otlp_endpoint=receiver.endpoint, otlp_protocol=receiver.protocol,
        probes=["tcp_lifecycle"], otlp_timeout_seconds=2.0, node_name=NODE,
        # every connection a span: other traffic on the machine must not spend the node's span
        # budget before this test's connections close (the budget has its own test)
        span_budget_per_second=0.0,
    )
    cfg.validate()
    stream = io.TextIOWrapper(open(log_path, "ab", buffering=0), encoding="utf-8", line_buffering=True)  # noqa: SIM115 (the agent's event log: closed with the agent)
    return Agent(cfg, Tracefs(preflight.check()), AgentParts(event_stream=stream))


def _on_port(receiver: OtlpReceiver, port: int) -> list[ReceivedSpan]:
    return [s for s in receiver.spans() if s.attributes.get("server.port") == port]


def _records_seen(agent) -> int:
    """Connection records taken off the ring buffer or counted lost in the kernel."""
    return agent.instruments.received_count("tcp_lifecycle") + agent.lost()


def _tcp(cgroup, n: int) -> int:
    result = cgroup.run("tcp", str(n))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["port"]


def test_spans_reach_a_collector_drops_are_counted_while_it_is_down_and_export_recovers(
    receiver: OtlpReceiver, cgroup, tmp_path: Path
) -> None:
    from agent.runtime import version

    log_path = tmp_path / "events.jsonl"
    agent = _agent(receiver, log_path)
    stopper: threading.Thread | None = None
    try:
        agent.start()
        assert [r.name for r in agent.reports if r.up] == ["tcp_lifecycle"]

        # 1. Collector up: every span of the workload arrives, decoded from the wire format.
        port = _tcp(cgroup, N_UP)
        spans = wait_for(lambda: (s := _on_port(receiver, port)) and len(s) >= 2 * N_UP and s, what="spans at the receiver")
        assert len(spans) == 2 * N_UP
        clients = [s for s in spans if s.kind == 3]  # SPAN_KIND_CLIENT
        servers = [s for s in spans if s.kind == 2]  # SPAN_KIND_SERVER
        assert len(clients) == len(servers) == N_UP
        assert {s.name for s in clients} == {"tcp connect"} and {s.name for s in servers} == {"tcp accept"}
        for s in clients:
            assert s.attributes["bcgov.tcp.bytes_sent"] == 1000 and s.attributes["bcgov.tcp.bytes_received"] == 37
            assert s.attributes["network.peer.address"] == "127.0.0.1" and s.attributes["network.peer.port"] == port
        for s in servers:
            assert s.attributes["bcgov.tcp.bytes_received"] == 1000 and s.attributes["bcgov.tcp.bytes_sent"] == 37
        for s in spans:
            assert s.attributes["bcgov.cgroup.id"] == cgroup.id
            assert s.scope == "bcgov.agent" and s.status_code == 0 and s.end_ns >= s.start_ns > 0
            assert s.resource["service.name"] == "bcgov-agent"
            assert s.resource["service.version"] == version()
            assert s.resource["host.name"] == socket.gethostname()
            assert s.resource["k8s.node.name"] == NODE
        assert len({s.trace_id for s in spans}) == 2 * N_UP

        # 2. Collector gone: the readers keep taking records off the ring buffer (each one is
        # received or counted lost in the kernel), spans are dropped and counted, and every span
        # made is exported, dropped or still queued. Other traffic on this machine is seen too,
        # so counts about the workload are lower bounds; the accounting identity is exact.
        receiver.stop()
        before = agent.span_stats()
        # every acknowledged span was recorded (an export cut off by the stop may have been
        # recorded and still count as failed: hence >=)
        assert len(receiver.spans()) >= before.exported
        seen_before = _records_seen(agent)
        port_down = _tcp(cgroup, N_DOWN)
        wait_for(lambda: _records_seen(agent) - seen_before >= 2 * N_DOWN, what="records handled while the collector is down")
        wait_for(lambda: agent.span_stats().dropped.get("export_failed", 0) > before.dropped.get("export_failed", 0),
                 timeout=30, what="a failed export counted")
        down = agent.span_stats()
        assert down.submitted == down.exported + down.dropped_total + down.queued
        assert down.exported == before.exported  # nothing can be acknowledged by a collector that is gone
        assert _on_port(receiver, port_down) == []

        # 3. Collector back on the same port: spans arrive again.
        received_at_restart = len(receiver.spans())
        receiver.start()
        _tcp(cgroup, N_BACK)
        wait_for(lambda: len(receiver.spans()) > received_at_restart, timeout=30, what="spans after the collector came back")
        wait_for(lambda: agent.span_stats().exported > down.exported, what="the agent to count them exported")
        assert _on_port(receiver, port_down) == []  # dropped spans stay dropped

        # 4. Collector gone again at shutdown: stop() returns (polled, not timed) and nothing is
        # left unaccounted for.
        receiver.stop()
        at_stop = agent.span_stats()
        seen_before = _records_seen(agent)
        port_stop = _tcp(cgroup, N_AT_STOP)
        wait_for(lambda: _records_seen(agent) - seen_before >= 2 * N_AT_STOP, what="records handled before stop")
        stopper = threading.Thread(target=agent.stop, name="agent-stop")
        stopper.start()
        wait_for(lambda: not stopper.is_alive(), timeout=60, what="agent.stop() to return with the collector down")
        final = agent.span_stats()
        assert final.queued == 0
        assert final.submitted == final.exported + final.dropped_total
        assert final.submitted > at_stop.submitted and final.dropped_total > at_stop.dropped_total
        assert _on_port(receiver, port_stop) == []
    finally:
        if stopper is None:
            agent.stop()
