"""ExportTraceServiceRequest in the OTLP protobuf wire format, written directly from `SpanData`.

The OTel SDK's path (a ReadableSpan per span, then its encoder building protobuf messages field
by field) costs ~150 us per span on a small node, on the export thread that shares the GIL with
the ring-buffer readers. Spans of connections repeat the same attribute keys and mostly the same
string values, so each attribute's encoded bytes are cached and a span is a few joins. The wire
format is protobuf's (varints, length-delimited fields) with the field numbers of
opentelemetry/proto/trace/v1/trace.proto; tests parse the result with opentelemetry-proto and
compare it to what the SDK's encoder makes of the same spans.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from agent.export.span_model import SCOPE_NAME, SpanData

_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_FIXED32 = struct.Struct("<I").pack
_CACHE_MAX = 16384
# What the SDK's encoder sets for a span without a parent: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE (0x100).
SPAN_FLAGS = 0x100


def _varint(n: int) -> bytes:
    if 0 <= n < _SMALL:
        return _SMALL_VARINTS[n]
    return _varint_slow(n)


def _varint_slow(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 on the wire: two's complement in ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = 1 << 14  # two-byte varints: lengths, ports up to 16383, small counts
_SMALL_VARINTS = [_varint_slow(i) for i in range(_SMALL)]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any_value(v: Any) -> bytes:
    """An AnyValue message (common.proto): string 1, bool 2, int 3, double 4, array 5."""
    if isinstance(v, bool):
        return b"\x10" + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        return b"\x18" + _varint(v)
    if isinstance(v, float):
        return b"\x21" + _DOUBLE(v)
    if isinstance(v, (list, tuple)):
        return _field(5, b"".join(_field(1, _any_value(x)) for x in v))  # ArrayValue.values = 1
    return _field(1, str(v).encode("utf-8"))


def _key_value(k: str, v: Any) -> bytes:
    """A KeyValue message: key 1, value 2."""
    return _field(1, k.encode("utf-8")) + _field(2, _any_value(v))


_attr_cache: dict[tuple[int, str, type, Any], bytes] = {}


def _attributes(number: int, attrs: dict[str, Any]) -> bytes:
    """The repeated KeyValue field `number` of its message, each attribute's encoding cached (the
    type is part of the key: True == 1 but they encode differently); lists are encoded each time."""
    out = []
    cache = _attr_cache
    for k, v in attrs.items():
        t = type(v)
        if t is list or t is tuple:
            out.append(_field(number, _key_value(k, v)))
            continue
        key = (number, k, t, v)
        enc = cache.get(key)
        if enc is None:
            enc = _field(number, _key_value(k, v))
            if len(cache) >= _CACHE_MAX:
                cache.clear()  # unique values (byte counts) churn it; start over rather than grow
            cache[key] = enc
        out.append(enc)
    return b"".join(out)


def _span(s: SpanData) -> bytes:
    parts = [
        b"\x0a\x10" + s.trace_id.to_bytes(16, "big"),  # trace_id = 1
        b"\x12\x08" + s.span_id.to_bytes(8, "big"),  # span_id = 2
        _field(5, s.name.encode("utf-8")),
        b"\x30" + _varint(s.kind),  # kind = 6
        b"\x39" + _FIXED64(s.start_ns),  # start_time_unix_nano = 7 (fixed64)
        b"\x41" + _FIXED64(s.end_ns),  # end_time_unix_nano = 8
        _attributes(9, s.attributes),
    ]
    for e in s.events:  # events = 11: Event{time_unix_nano 1 fixed64, name 2, attributes 3}
        parts.append(_field(11, b"\x09" + _FIXED64(e.time_ns) + _field(2, e.name.encode("utf-8")) + _attributes(3, e.attributes)))
    status = (_field(2, s.status_message.encode("utf-8")) if s.status_message else b"") + (
        b"\x18" + _varint(s.status_code) if s.status_code else b"")
    parts.append(_field(15, status))  # status = 15: Status{message 2, code 3}
    parts.append(b"\x85\x01" + _FIXED32(SPAN_FLAGS))  # flags = 16 (fixed32)
    return _field(2, b"".join(parts))  # ScopeSpans.spans = 2


def export_request(spans: Sequence[SpanData], resource: dict[str, Any], scope_version: str) -> bytes:
    """A serialized ExportTraceServiceRequest with one ResourceSpans and one ScopeSpans."""
    scope = _field(1, _field(1, SCOPE_NAME.encode("utf-8")) + _field(2, scope_version.encode("utf-8")))
    scope_spans = _field(2, scope + b"".join([_span(s) for s in spans]))  # ResourceSpans.scope_spans = 2
    resource_msg = _field(1, _attributes(1, resource))  # ResourceSpans.resource = 1: Resource{attributes 1}
    return _field(1, resource_msg + scope_spans)  # ExportTraceServiceRequest.resource_spans = 1
