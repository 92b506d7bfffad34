"""The exporters that ship spans (agent/export/span_model.py): OTLP JSON lines to a rotating file
(default, no collector needed), or OTLP over gRPC/HTTP through the OTel SDK's transport with the
request bytes written by agent/export/otlp_proto.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from itertools import islice
from typing import Any

from agent.export.json_text import cached_fragment, finite_float, json_str
from agent.export.otlp_proto import export_request
from agent.export.otlp_transport import TRACES, EncodedSender
from agent.export.rotating_file import RotatingFile
from agent.export.span_model import SCOPE_NAME, SpanData

log = logging.getLogger("bcgov.agent.export.spans")


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


_json_any = json.JSONEncoder(separators=(",", ":")).encode


@cached_fragment
def _str_attribute(k: str, v: str) -> str:
    return f'{{"key":{json_str(k)},"value":{{"stringValue":{json_str(v)}}}}}'


@cached_fragment
def _attribute_head(k: str) -> str:
    return f'{{"key":{json_str(k)},"value":'


def _json_attribute(k: str, v: Any) -> str:
    if type(v) is str:
        return _str_attribute(k, v)
    head = _attribute_head(k)
    t = type(v)
    if t is int:
        return f'{head}{{"intValue":"{v}"}}}}'
    if finite_float(v):
        return f'{head}{{"doubleValue":{v!r}}}}}'
    if t is bool:
        return f'{head}{{"boolValue":{"true" if v else "false"}}}}}'
    return head + _json_any(_any_value(v)) + "}"


def _json_attributes(attrs: dict[str, Any]) -> str:
    return "[" + ",".join([_json_attribute(k, v) for k, v in attrs.items()]) + "]"


def json_attribute_list(attrs: dict[str, Any]) -> str:
    """`attrs` as comma-joined OTLP JSON attribute objects (no brackets): a span's `json_tail`."""
    return ",".join([_json_attribute(k, v) for k, v in attrs.items()])


def _json_span_attributes(s: SpanData) -> str:
    k = s.json_tail_keys
    attrs = s.attributes
    if not k:
        return _json_attributes(attrs)
    head = ",".join([_json_attribute(a, v) for a, v in islice(attrs.items(), len(attrs) - k)])
    return f"[{head},{s.json_tail}]" if head else f"[{s.json_tail}]"


def _json_span(s: SpanData) -> str:
    events = ",".join([
        f'{{"timeUnixNano":"{e.time_ns}","name":{json_str(e.name)},"attributes":{_json_attributes(e.attributes)}}}'
        for e in s.events
    ])
    status = f',"message":{json_str(s.status_message)}' if s.status_message else ""
    return (
        f'{{"traceId":"{s.trace_id:032x}","spanId":"{s.span_id:016x}","name":{json_str(s.name)},"kind":{int(s.kind)},'
        f'"startTimeUnixNano":"{s.start_ns}","endTimeUnixNano":"{s.end_ns}","attributes":{_json_span_attributes(s)},'
        f'"events":[{events}],"status":{{"code":{int(s.status_code)}{status}}}}}'
    )


def otlp_json_line(spans: Sequence[SpanData], resource: dict[str, Any], scope_version: str) -> str:
    """An ExportTraceServiceRequest in the OTLP JSON encoding (hex ids, string int64s) as compact
    JSON text, built from cached fragments (several times
    cheaper than building the dicts and dumping them, and the export thread competes with the
    ring buffer readers for the GIL)."""
    head = (
        f'{{"resourceSpans":[{{"resource":{{"attributes":{_json_attributes(resource)}}},"scopeSpans":[{{"scope":'
        f'{{"name":{json_str(SCOPE_NAME)},"version":{json_str(scope_version)}}},"spans":['
    )
    return head + ",".join([_json_span(s) for s in spans]) + "]}]}]}"


class JsonlFileExporter:
    """Appends one OTLP JSON ExportTraceServiceRequest per batch, one per line, to a file that
    rotates by size (at most max_bytes * (backups + 1) on disk; agent/export/rotating_file.py)."""

    def __init__(
        self, path: str, resource: dict[str, Any], scope_version: str,
        max_bytes: int = 64 * 1024 * 1024, backups: int = 3,
    ) -> None:
        self.path = path
        self._resource = resource
        self._version = scope_version
        self.file = RotatingFile(path, max_bytes, backups, name="spans")
        self._fh = self.file

    def export(self, spans: Sequence[SpanData]) -> bool:
        """False when the batch was not written (an I/O error, or one line larger than
        max_bytes): the span queue then counts its spans as dropped (export_failed)."""
        try:
            dropped_before = self.file.lines_dropped
            self._fh.write(otlp_json_line(spans, self._resource, self._version) + "\n")
            self._fh.flush()
            return self.file.lines_dropped == dropped_before
        except OSError as exc:
            log.error("cannot write spans to %s: %s", self.path, exc)
            return False

    def shutdown(self) -> None:
        self._fh.close()


class OtlpExporter:
    """Ships spans over OTLP (gRPC or HTTP/protobuf) through the OTel SDK's exporters
    (agent/export/otlp_transport.py: retries until `timeout_s`, which bounds how long one failing batch
    holds up the export thread). The request itself is not built by the SDK (a ReadableSpan per
    span and its encoder cost ~100 us a span): agent/export/otlp_proto.py writes the same protobuf bytes
    from cached attribute encodings, and the transport sends those.
    """

    def __init__(
        self, endpoint: str, protocol: str, resource: dict[str, Any], scope_version: str, timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        from opentelemetry.sdk.resources import Resource

        # The SDK's resource (its telemetry.sdk.* and service.instance.id added), as it would send it.
        self._resource_attrs = dict(Resource.create(resource).attributes)
        self._version = scope_version
        self._sender = EncodedSender(TRACES, endpoint, protocol, timeout_s, headers)

    def request_bytes(self, spans: Sequence[SpanData]) -> bytes:
        """The serialized ExportTraceServiceRequest for `spans`."""
        return export_request(spans, self._resource_attrs, self._version)

    def export(self, spans: Sequence[SpanData]) -> bool:
        return self._sender.send(self.request_bytes(spans), len(spans))

    def shutdown(self) -> None:
        self._sender.shutdown()
