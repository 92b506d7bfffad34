"""Event lines as OpenTelemetry LogRecords over OTLP (gRPC or HTTP/protobuf), beside or instead of
the JSON lines on stderr or in a file, so one collector can take all three pillars.

Each line the event log writes (agent/export/event_log.py) is handed over as a `LogLine` (the reader
thread only appends it to a bounded queue: agent/export/queue.py's, with the same drop reasons and
counts as spans) and becomes one LogRecord on the export thread with the same content:

| event line field | LogRecord field |
|---|---|
| `time` | `time_unix_nano` (and `observed_time_unix_nano`) |
| `severity` | `severity_text`, and `severity_number` per the OTel log data model (INFO 9, WARN 13, ERROR 17) |
| `body` | `body` (string) |
| `attributes` | `attributes` (strings, ints, floats, bools, lists of strings as arrays) |
| `trace_id`, `span_id` | `trace_id`, `span_id` (16 and 8 bytes), so a log line joins its span |

The resource is the spans' (service.name bcgov-agent, host and node names), the scope
`bcgov.agent`. Requests are written in protobuf's wire format with the span encoder's cached
attribute encodings (`encode_request`; checked against opentelemetry-proto's messages) and sent by
the OTel SDK's own exporters (channel, retries with backoff until the timeout, shutdown), as spans are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from agent.export.otlp_transport import LOGS, EncodedSender
from agent.export.span_model import SCOPE_NAME

log = logging.getLogger("bcgov.agent.export.otlp_logs")

# OTel log data model, SeverityNumber: the first number of each range.
SEVERITY_NUMBER = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21}


@dataclass(slots=True, frozen=True)
class LogLine:
    """One event line as written: time in Unix ns, attributes as the line's JSON object text."""

    time_ns: int
    severity: str
    body: str
    attributes_json: str
    trace_id: str | None = None
    span_id: str | None = None


class LogExportCounters:
    """bcgov_agent_logs_exported_total and bcgov_agent_logs_dropped_total{reason} (queue_full,
    export_failed, shutdown), as for spans: made = exported + dropped + queued."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.exported = Counter("bcgov_agent_logs_exported", "Event lines sent over OTLP as LogRecords.", registry=registry)
        self.dropped = Counter("bcgov_agent_logs_dropped", "Event lines not sent over OTLP, by reason.", ["reason"],
                               registry=registry)
        for reason in ("queue_full", "export_failed", "shutdown"):
            self.dropped.labels(reason)

    def on_drop(self, reason: str, n: int) -> None:
        self.dropped.labels(reason).inc(n)

    def on_export(self, n: int) -> None:
        self.exported.inc(n)


def _id(hex_text: str | None, size: int) -> bytes:
    if not hex_text:
        return b""
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        return b""
    return raw if len(raw) == size else b""


def encode_request(lines: Sequence[LogLine], resource: dict[str, Any], scope_version: str) -> bytes:
    """An ExportLogsServiceRequest for `lines`, written directly in protobuf's wire format with the span
    encoder's cached attribute encodings (agent/export/otlp_proto.py): building the messages costs ~60 us
    a record, too much at thousands of lines a second. Field numbers: opentelemetry/proto/logs/v1
    /logs.proto; tests check both give the same message."""
    from agent.export.otlp_proto import _FIXED64, _attributes, _field, _varint

    records = []
    for line in lines:
        try:
            attrs = json.loads(line.attributes_json)
        except ValueError:
            attrs = {"bcgov.attributes_json": line.attributes_json}
        ts = _FIXED64(line.time_ns)
        parts = [b"\x09" + ts]  # time_unix_nano = 1 (fixed64)
        sev = SEVERITY_NUMBER.get(line.severity.upper(), 0)
        if sev:
            parts.append(b"\x10" + _varint(sev))  # severity_number = 2
        parts.append(_field(3, line.severity.encode("utf-8")))  # severity_text = 3
        parts.append(_field(5, _field(1, line.body.encode("utf-8"))))  # body = 5: AnyValue{string_value 1}
        parts.append(_attributes(6, attrs if isinstance(attrs, dict) else {}))  # attributes = 6
        tid, sid = _id(line.trace_id, 16), _id(line.span_id, 8)
        if tid:
            parts.append(_field(9, tid))  # trace_id = 9
        if sid:
            parts.append(_field(10, sid))  # span_id = 10
        parts.append(b"\x59" + ts)  # observed_time_unix_nano = 11 (fixed64)
        records.append(_field(2, b"".join(parts)))  # ScopeLogs.log_records = 2
    scope = _field(1, _field(1, SCOPE_NAME.encode("utf-8")) + _field(2, scope_version.encode("utf-8")))
    scope_logs = _field(2, scope + b"".join(records))  # ResourceLogs.scope_logs = 2
    resource_msg = _field(1, _attributes(1, resource))  # ResourceLogs.resource = 1
    return _field(1, resource_msg + scope_logs)  # ExportLogsServiceRequest.resource_logs = 1


class OtlpLogExporter:
    """Sends LogLine batches to `endpoint` over OTLP: gRPC (`host:port`, `http://host:4317`) or
    HTTP/protobuf (`http://host:4318`, `/v1/logs` added). `export` returns False on failure after
    the SDK exporter's retries (bounded by `timeout_s`); it never raises."""

    def __init__(self, endpoint: str, protocol: str, resource: dict[str, Any], scope_version: str,
                 timeout_s: float = 5.0, headers: dict[str, str] | None = None) -> None:
        from opentelemetry.sdk.resources import Resource

        self._resource = dict(Resource.create(resource).attributes)  # as the span exporter sends it
        self._version = scope_version
        self._sender = EncodedSender(LOGS, endpoint, protocol, timeout_s, headers)

    def request_bytes(self, lines: Sequence[LogLine]) -> bytes:
        return encode_request(lines, self._resource, self._version)

    def export(self, lines: Sequence[LogLine]) -> bool:
        return self._sender.send(self.request_bytes(lines), len(lines))

    def shutdown(self) -> None:
        self._sender.shutdown()
