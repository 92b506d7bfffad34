"""The OTLP log request built with opentelemetry-proto's message classes: the reference the agent's
wire encoder (agent/export/otlp_logs.py `encode_request`, what the exporter sends) is checked against."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent.export.otlp_logs import SEVERITY_NUMBER, LogLine, _id
from agent.export.span_model import SCOPE_NAME


def _any_value(v: Any) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue

    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[_any_value(x) for x in v]))
    if v is None:
        return AnyValue()
    return AnyValue(string_value=v if isinstance(v, str) else json.dumps(v, default=str))


def _key_values(attrs: dict[str, Any]) -> list[Any]:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items()]


def export_request(lines: Sequence[LogLine], resource: dict[str, Any], scope_version: str) -> Any:
    """The ExportLogsServiceRequest (opentelemetry-proto message) for `lines`."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    records = []
    for line in lines:
        try:
            attrs = json.loads(line.attributes_json)
        except ValueError:
            attrs = {"bcgov.attributes_json": line.attributes_json}
        records.append(LogRecord(
            time_unix_nano=line.time_ns, observed_time_unix_nano=line.time_ns,
            severity_number=SEVERITY_NUMBER.get(line.severity.upper(), 0), severity_text=line.severity,
            body=AnyValue(string_value=line.body), attributes=_key_values(attrs if isinstance(attrs, dict) else {}),
            trace_id=_id(line.trace_id, 16), span_id=_id(line.span_id, 8),
        ))
    scope = ScopeLogs(scope=InstrumentationScope(name=SCOPE_NAME, version=scope_version), log_records=records)
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(resource=Resource(attributes=_key_values(resource)),
                                                                scope_logs=[scope])])
