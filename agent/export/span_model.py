"""The span model: one finished span (`SpanData`, `SpanEvent`), its OTLP kind and status codes,
the ids it carries (`IdSource`), and the `SpanExporter` protocol a writer implements.

Spans are synthesised after the fact with kernel timestamps, so the tracer API (which stamps
"now" and tracks context) is bypassed: a probe's handler builds a `SpanData` directly, the span
queue (agent/export/queue.py) batches them, and an exporter (agent/export/spans.py) ships them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    # encoder writes them once per workload instead of once per span (probes/tcp_lifecycle.py handler).
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
