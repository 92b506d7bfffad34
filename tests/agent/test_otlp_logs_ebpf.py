"""One collector, three pillars: a real agent (tcp_lifecycle on this kernel, real loopback traffic)
sends spans AND its event lines over OTLP to the stand-in collector (tests/agent/otlp_receiver.py,
real opentelemetry-proto messages over grpcio and HTTP/protobuf). Every connection's log line
arrives as a LogRecord carrying its span's trace_id and span_id, and with `logs: both` the local
line is the same record."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from agent_harness import wait_for
from otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.ebpf

N = 7  # connections; each makes a client and a server span, and a log line for each


def test_log_records_arrive_with_the_trace_ids_of_their_spans(receiver: OtlpReceiver, cgroup, tmp_path: Path) -> None:
    from agent.config import AgentConfig
    from agent.kernel import preflight
    from agent.kernel.tracefs import Tracefs
    from agent.runtime import Agent, AgentParts

    cfg = AgentConfig(metrics_addr="off", otlp_endpoint=receiver.endpoint, otlp_protocol=receiver.protocol,
                      probes=["tcp_lifecycle"], otlp_timeout_seconds=2.0, node_name="node-logs-test", logs="both",
                      span_budget_per_second=0)  # every connection a span: other traffic on the machine must not shed ours
    cfg.validate()
    log_path = tmp_path / "events.jsonl"
    stream = io.TextIOWrapper(open(log_path, "ab", buffering=0), encoding="utf-8", line_buffering=True)  # noqa: SIM115 (the agent's event log: closed with the agent)
    agent = Agent(cfg, Tracefs(preflight.check()), AgentParts(event_stream=stream))
    try:
        agent.start()
        result = cgroup.run("tcp", str(N))
        assert result.returncode == 0, result.stderr
        port = json.loads(result.stdout)["port"]
        spans = wait_for(lambda: (s := [x for x in receiver.spans() if x.attributes.get("server.port") == port])
                         and len(s) >= 2 * N and s, what="the workload's spans at the collector")
        by_trace = {s.trace_id: s for s in spans}
        logs = wait_for(lambda: (r := [x for x in receiver.logs() if x.trace_id in by_trace]) and len(r) >= 2 * N and r,
                        what="the workload's log records at the collector")
        exported = wait_for(lambda: (n := agent.parts.registry.get_sample_value("bcgov_agent_logs_exported_total")) >= 2 * N and n,
                            what="the agent to count them exported")
    finally:
        agent.stop()
        stream.close()
    assert len(spans) == len(logs) == 2 * N
    assert {r.trace_id for r in logs} == set(by_trace)
    for r in logs:
        assert r.span_id == by_trace[r.trace_id].span_id  # the line names its own span
        assert r.attributes["bcgov.cgroup.id"] == cgroup.id
        assert r.resource["service.name"] == "bcgov-agent" and r.resource["k8s.node.name"] == "node-logs-test"
    local = {l["trace_id"]: l for l in map(json.loads, log_path.read_text().splitlines()) if l.get("trace_id") in by_trace}
    assert set(local) == set(by_trace)
    for r in logs:
        line = local[r.trace_id]
        assert (r.body, r.attributes, r.severity_text, r.span_id) == (line["body"], line["attributes"], line["severity"], line["span_id"])
        assert r.time_ns // 1000 % 1_000_000 == int(line["time"][20:26])  # same instant (the line keeps microseconds)
    assert exported >= 2 * N
