"""One JSON log line per event, with the span's trace_id so logs join traces and exemplars."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from typing import Any, TextIO


def iso_ns(epoch_ns: int) -> str:
    """RFC 3339 UTC timestamp with microseconds."""
    return dt.datetime.fromtimestamp(epoch_ns / 1e9, tz=dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class EventLog:
    """Writes event lines to a stream (stderr or a file); safe from several reader threads."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
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
        rec: dict[str, Any] = {"time": iso_ns(time_ns), "severity": severity, "body": body}
        if trace_id:
            rec["trace_id"] = trace_id
            rec["span_id"] = span_id
        rec["attributes"] = attributes
        line = json.dumps(rec, separators=(",", ":"), default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Close the stream unless it is a standard stream."""
        if self._stream not in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            self._stream.close()
