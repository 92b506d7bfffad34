"""One JSON log line per event, with the span's trace_id so logs join traces and exemplars."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent.export.json_text import cached_fragment, finite_float, json_str
from agent.export.otlp_logs import LogLine


class TextStream(Protocol):
    """Where lines go: a text file, stderr, or agent/export/rotating_file.py's RotatingFile."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


# Lines held at most before a batched log writes them out even without a flush() call.
MAX_PENDING = 512

_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


@cached_fragment
def _str_item(k: str, v: str) -> str:
    return f"{json_str(k)}:{json_str(v)}"


@cached_fragment
def _key_head(k: str) -> str:
    return json_str(k) + ":"


def _json_item(k: str, v: Any) -> str:
    if type(v) is str:
        return _str_item(k, v)
    head = _key_head(k)
    t = type(v)
    if t is int:
        return f"{head}{v}"
    if finite_float(v):
        return f"{head}{v!r}"
    if t is bool:
        return head + ("true" if v else "false")
    if v is None:
        return head + "null"
    return head + _encode(v)


def json_object(attributes: dict[str, Any]) -> str:
    """`attributes` as compact JSON, exactly as json.dumps(..., separators=(",", ":"), default=str)
    would write it (string keys), from cached fragments."""
    return "{" + ",".join([_json_item(k, v) for k, v in attributes.items()]) + "}"
_second: list[Any] = [None, ""]  # (epoch second, its "YYYY-MM-DDTHH:MM:SS" text): one strftime a second


def iso_ns(epoch_ns: int) -> str:
    """RFC 3339 UTC timestamp with microseconds (truncated, never rounded into the next second)."""
    sec, ns = divmod(epoch_ns, 1_000_000_000)
    cached = _second
    if cached[0] != sec:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        cached[0], cached[1] = sec, text  # two stores; a racing reader at worst formats again
    else:
        text = cached[1]
    return f"{text}.{ns // 1000:06d}Z"


class EventLog:
    """Writes event lines to a stream (stderr or a file); safe from several reader threads.

    Unbatched (the default), every line is written and flushed at once. Batched, lines are
    held in memory and written with one write and one flush when `flush()` is called (the ring
    buffer readers call `flush(max_age_s)` after every poll: written once the oldest held line is
    that old, and the poll timeout bounds how long a quiet reader waits to call it), when
    MAX_PENDING are held, and at `close()`. One write per line costs a system call per record,
    and under load the GIL handoff around each (other threads take the GIL while it is released)
    costs far more."""

    def __init__(self, stream: TextStream | None, batched: bool = False, sink: Callable[[Any], None] | None = None) -> None:
        # stream None: no local lines (logs go only to `sink`, e.g. OTLP); `sink` gets every line
        # as an agent.export.otlp_logs.LogLine, on the writing thread (it must only enqueue).
        self._stream = stream
        self._sink = sink
        self._batched = batched
        self._pending: list[str] = []
        self._first_at = 0.0  # monotonic time the oldest held line was added
        self._lock = threading.Lock()

    def write(
        self,
        time_ns: int,
        body: str,
        attributes: dict[str, Any],
        severity: str = "INFO",
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> None:
        """Write one line: OTel log data model field names, flat attributes."""
        self.write_json(time_ns, body, json_object(attributes), severity, trace_id, span_id)

    def write_json(
        self,
        time_ns: int,
        body: str,
        attributes_json: str,
        severity: str = "INFO",
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> None:
        """`write` with the attributes already encoded as one JSON object (the connection path
        builds that text from per-workload fragments instead of encoding a dict per record)."""
        if self._sink is not None:
            self._sink(LogLine(time_ns, severity, body, attributes_json, trace_id, span_id))
        if self._stream is None:
            return
        head = f'{{"time":"{iso_ns(time_ns)}","severity":{json_str(severity)},"body":{json_str(body)}'
        if trace_id:
            head += f',"trace_id":{json_str(trace_id)},"span_id":{_encode(span_id)}'
        line = f'{head},"attributes":{attributes_json}}}\n'
        if not self._batched:
            with self._lock:
                self._stream.write(line)
                self._stream.flush()
            return
        with self._lock:
            pending = self._pending
            if not pending:
                self._first_at = time.monotonic()
            pending.append(line)
            if len(pending) < MAX_PENDING:
                return
        self.flush()

    def flush(self, max_age_s: float = 0.0) -> None:
        """Write out and flush the held lines once the oldest is `max_age_s` old (0: now)."""
        with self._lock:
            if not self._pending or self._stream is None:
                return
            if max_age_s and time.monotonic() - self._first_at < max_age_s:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._stream.write(text)
            self._stream.flush()

    def close(self) -> None:
        """Write out what is held, then close the stream unless it is a standard stream."""
        self.flush()
        if self._stream is not None and self._stream not in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            self._stream.close()
