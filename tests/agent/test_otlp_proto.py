"""agent/export/otlp_proto.py writes the OTLP request bytes itself: parsed with opentelemetry-proto, they
must equal what the OTel SDK's own encoder makes of the same spans."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from agent.export.otlp_proto import export_request
from agent.export.span_model import KIND_SERVER, SCOPE_NAME, STATUS_ERROR, SpanData, SpanEvent


def _sdk_request(spans: list[SpanData], resource: Resource, version: str) -> ExportTraceServiceRequest:
    """What the SDK path (ReadableSpan, then its encoder) sends for `spans`."""
    scope = InstrumentationScope(SCOPE_NAME, version)
    readable = [
        ReadableSpan(
            name=s.name,
            context=SpanContext(s.trace_id, s.span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
            resource=resource,
            attributes=s.attributes,
            events=[Event(e.name, e.attributes, e.time_ns) for e in s.events],
            kind=SpanKind.SERVER if s.kind == KIND_SERVER else SpanKind.CLIENT,
            status=Status(StatusCode.ERROR, s.status_message or None) if s.status_code == STATUS_ERROR else Status(StatusCode.UNSET),
            start_time=s.start_ns,
            end_time=s.end_ns,
            instrumentation_scope=scope,
        )
        for s in spans
    ]
    return encode_spans(readable)


def test_request_bytes_equal_the_sdk_encoding() -> None:
    attrs: dict[str, Any] = {
        "network.transport": "tcp", "network.local.port": 40000, "big": 2**40 + 3, "neg": -5, "zero": 0,
        "bcgov.tcp.handshake_seconds": 5e-05, "flag": True, "off": False, "one": 1, "args": ["a", 1, True, 0.5],
        "unicode": "é€", "long": "x" * 300,
    }
    spans = [
        SpanData(2**128 - 1, 2**64 - 1, "tcp connect", 3, 10, 20, dict(attrs),
                 [SpanEvent("tcp.retransmit", 12, {"bcgov.tcp.retransmit.index": 1}),
                  SpanEvent("tcp.reset", 15, {"bcgov.tcp.reset.direction": "sent"})],
                 STATUS_ERROR, "connection reset"),
        SpanData(5, 6, "tcp accept", KIND_SERVER, 1_763_781_684_123_456_789, 1_763_781_684_123_456_799, {}, []),
    ] + [SpanData(100 + i, 200 + i, "tcp connect", 3, i, i + 1, {"client.port": 30000 + i, "one": 1}, []) for i in range(300)]
    resource = Resource.create({"service.name": "bcgov-agent", "service.version": "0.1", "host.name": "n1"})
    want = _sdk_request(spans, resource, "0.1")
    for _ in range(2):  # the second time from cached attribute encodings
        got = ExportTraceServiceRequest.FromString(export_request(spans, dict(resource.attributes), "0.1"))
        assert got == want
