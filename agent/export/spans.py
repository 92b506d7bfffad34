"""Spans for finished connections, built from kernel facts, and the exporters that ship them.

Spans are synthesised after the fact with kernel timestamps, so the tracer API (which stamps
"now" and tracks context) is bypassed: a `SpanData` is built directly and exported either as
OTLP JSON lines (default, no collector needed) or with the OTel SDK's OTLP exporters.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from agent.export.json_text import cached_fragment, finite_float, json_str
from agent.export.otlp_transport import TRACES, EncodedSender
from agent.export.rotating_file import RotatingFile

log = logging.getLogger("bcgov.agent.export.spans")

KIND_SERVER, KIND_CLIENT = 2, 3          # OTLP SpanKind
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
SCOPE_NAME = "bcgov.agent"


@dataclass(slots=True)
class SpanEvent:
    """A point in time on a span (a retransmit, a reset)."""

    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SpanData:
    """One finished span with wall-clock times in Unix nanoseconds."""

    trace_id: int
    span_id: int
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[SpanEvent] = field(default_factory=list)
    status_code: int = STATUS_UNSET
    status_message: str = ""
    # The last `json_tail_keys` attributes (the workload's and peer's, the same for every record
    # of a workload) already encoded as OTLP JSON attribute objects, comma-joined: the JSON
    # encoder writes them once per workload instead of once per span (EventPipeline._span).
    json_tail: str = ""
    json_tail_keys: int = 0

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"


class IdSource:
    """Random, non-zero W3C trace and span ids; seedable for tests.

    Unseeded, ids come from a Mersenne Twister seeded with 32 bytes from os.urandom, as the OTel
    SDK's own RandomIdGenerator does: trace ids must be unique and well spread (W3C Trace Context
    asks for randomness, not secrecy; they are no credential), and a getrandbits call costs a
    fraction of the os.urandom syscall that SystemRandom makes for every id (which, under load,
    also gives up the GIL to the other threads)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(32), "big"))

    def trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1

    def span_id(self) -> int:
        return self._rng.getrandbits(64) or 1


class SpanExporter(Protocol):
    """Ships batches of spans; returns False on failure (the queue counts the loss)."""

    def export(self, spans: Sequence[SpanData]) -> bool: ...

    def shutdown(self) -> None: ...


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
    """`otlp_json_request` as compact JSON text, built from cached fragments (several times
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
        from agent.export.otlp_proto import export_request

        return export_request(spans, self._resource_attrs, self._version)

    def export(self, spans: Sequence[SpanData]) -> bool:
        return self._sender.send(self.request_bytes(spans), len(spans))

    def shutdown(self) -> None:
        self._sender.shutdown()
