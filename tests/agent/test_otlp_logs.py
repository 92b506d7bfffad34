"""Event lines as OTel LogRecords over OTLP, to the stand-in collector (tests/agent/otlp_receiver.py:
the real opentelemetry-proto ExportLogsServiceRequest over grpcio and over HTTP/protobuf; no
collector runs here): each line the event log writes arrives as one LogRecord with the same time,
severity, body, attributes, trace_id and span_id; the queue is bounded and every line made is
exported, dropped (counted by reason) or still queued. The `logs` config key chooses where lines go."""

from __future__ import annotations

import io
import json

import pytest
from agent_harness import wait_for
from otlp_receiver import OtlpReceiver
from prometheus_client import CollectorRegistry

from agent.config import AgentConfig, ConfigError
from agent.export.event_log import EventLog
from agent.export.otlp_logs import SEVERITY_NUMBER, LogExportCounters, OtlpLogExporter
from agent.export.queue import SpanQueue

T0_NS = 1_800_000_000_123_456_789
RESOURCE = {"service.name": "bcgov-agent", "host.name": "node-1", "k8s.node.name": "node-1"}
N = 23  # a prime, so a miscount cannot land on it by chance


def _pipeline(receiver: OtlpReceiver, max_queue: int = 16384, timeout_s: float = 2.0):
    reg = CollectorRegistry()
    counters = LogExportCounters(reg)
    queue = SpanQueue(OtlpLogExporter(receiver.endpoint, receiver.protocol, RESOURCE, "0.1.0", timeout_s),
                      on_drop=counters.on_drop, on_export=counters.on_export, max_queue=max_queue, max_batch=7,
                      interval_s=0.05, flush_timeout_s=timeout_s)
    return queue, reg


def _write(log: EventLog, n: int = N) -> None:
    for i in range(n):
        trace = f"{i + 1:032x}" if i % 2 == 0 else None
        log.write(T0_NS + i * 1000, "tcp connection reset" if trace else "process exec",
                  {"k8s.pod.name": "ledger-0", "process.pid": 4000 + i, "bcgov.cpu": 0.5 + i, "bcgov.ok": i % 3 == 0,
                   "process.command_args": ["ledger", f"--n={i}"], "network.peer.port": 5432},
                  severity="WARN" if trace else "INFO", trace_id=trace, span_id=f"{i + 1:016x}" if trace else None)


def test_every_line_arrives_as_a_log_record_with_the_same_content(receiver: OtlpReceiver) -> None:
    queue, reg = _pipeline(receiver)
    local = io.StringIO()
    log = EventLog(local, sink=queue.submit)
    _write(log)
    queue.shutdown()
    lines = [json.loads(l) for l in local.getvalue().splitlines()]
    got = sorted(receiver.logs(), key=lambda r: r.time_ns)
    assert len(lines) == len(got) == N
    for i, (line, rec) in enumerate(zip(lines, got, strict=True)):
        assert rec.time_ns == T0_NS + i * 1000 and line["time"].startswith("2027-01-15T08:00:00.1234")
        assert rec.body == line["body"] and rec.attributes == line["attributes"]
        assert rec.severity_text == line["severity"] and rec.severity_number == SEVERITY_NUMBER[line["severity"]]
        assert rec.trace_id == line.get("trace_id", "") and rec.span_id == (line.get("span_id") or "")
        assert rec.resource["service.name"] == "bcgov-agent" and rec.resource["k8s.node.name"] == "node-1"
        assert rec.scope == "bcgov.agent"
    assert reg.get_sample_value("bcgov_agent_logs_exported_total") == N
    assert sum(reg.get_sample_value("bcgov_agent_logs_dropped_total", {"reason": r}) for r in ("queue_full", "export_failed", "shutdown")) == 0


def test_a_dead_collector_and_a_full_queue_are_counted_and_nothing_is_unaccounted(receiver: OtlpReceiver) -> None:
    receiver.stop()
    queue, reg = _pipeline(receiver, max_queue=5, timeout_s=0.5)
    log = EventLog(None, sink=queue.submit)  # OTLP only: no local lines
    _write(log)
    wait_for(lambda: queue.stats().dropped.get("export_failed", 0) > 0, timeout=30, what="a failed export counted")
    queue.shutdown()
    st = queue.stats()
    assert st.submitted == N and st.queued == 0 and st.exported == 0
    assert st.dropped.get("queue_full", 0) > 0 and st.submitted == st.exported + st.dropped_total
    for reason, n in st.dropped.items():
        assert reg.get_sample_value("bcgov_agent_logs_dropped_total", {"reason": reason}) == n
    assert receiver.logs() == []


@pytest.mark.parametrize("logs,endpoint,want", [
    ("auto", None, (True, False)), ("auto", "http://c:4317", (True, True)), ("local", "http://c:4317", (True, False)),
    ("otlp", "http://c:4317", (False, True)), ("both", "http://c:4317", (True, True)),
])
def test_the_logs_key_chooses_where_lines_go(logs: str, endpoint: str | None, want: tuple[bool, bool]) -> None:
    cfg = AgentConfig(logs=logs, otlp_endpoint=endpoint)
    cfg.validate()
    assert cfg.log_destinations() == want


@pytest.mark.parametrize("logs,endpoint,message", [
    ("otlp", None, "logs: otlp needs otlp_endpoint (e.g. http://collector:4317); or set logs: local"),
    ("loki", None, "logs must be 'auto', 'local', 'otlp' or 'both', not 'loki'"),
])
def test_bad_logs_settings_are_one_clear_line(logs: str, endpoint: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AgentConfig(logs=logs, otlp_endpoint=endpoint).validate()


def test_the_wire_encoder_writes_what_opentelemetry_proto_builds() -> None:
    """encode_request (what is sent) parses to the very message opentelemetry-proto's classes build."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from otlp_logs_reference import export_request

    from agent.export.otlp_logs import encode_request

    sent: list = []
    log = EventLog(None, sink=sent.append)
    _write(log)
    log.write(T0_NS, "odd", {"bcgov.neg": -5, "bcgov.big": 2**40, "bcgov.empty": "", "bcgov.list": []}, severity="DEBUG",
              trace_id="not-hex", span_id="00f067aa0ba902b7")
    resource = {"service.name": "bcgov-agent", "service.version": "0.1.0", "host.name": "n"}
    assert ExportLogsServiceRequest.FromString(encode_request(sent, resource, "0.1.0")) == export_request(sent, resource, "0.1.0")
