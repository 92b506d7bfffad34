"""The OTLP JSON ExportTraceServiceRequest built the plain way, as dicts: the reference the agent's
fast encoder (agent/export/spans.py `otlp_json_line`, cached text fragments) is checked against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.export.span_model import SCOPE_NAME, SpanData


def _any_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}  # OTLP JSON encodes int64 as a decimal string
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(x) for x in v]}}
    return {"stringValue": str(v)}


def otlp_attributes(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """Attributes in the OTLP JSON shape."""
    return [{"key": k, "value": _any_value(v)} for k, v in attrs.items()]


def otlp_json_request(spans: Sequence[SpanData], resource: dict[str, Any], scope_version: str) -> dict[str, Any]:
    """An ExportTraceServiceRequest in the OTLP JSON encoding (hex ids, string int64s)."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": otlp_attributes(resource)},
                "scopeSpans": [
                    {
                        "scope": {"name": SCOPE_NAME, "version": scope_version},
                        "spans": [
                            {
                                "traceId": s.trace_id_hex,
                                "spanId": s.span_id_hex,
                                "name": s.name,
                                "kind": s.kind,
                                "startTimeUnixNano": str(s.start_ns),
                                "endTimeUnixNano": str(s.end_ns),
                                "attributes": otlp_attributes(s.attributes),
                                "events": [
                                    {
                                        "timeUnixNano": str(e.time_ns),
                                        "name": e.name,
                                        "attributes": otlp_attributes(e.attributes),
                                    }
                                    for e in s.events
                                ],
                                "status": {"code": s.status_code, **({"message": s.status_message} if s.status_message else {})},
                            }
                            for s in spans
                        ],
                    }
                ],
            }
        ]
    }
