"""One agent line when the OTLP collector stops taking exports, one when it takes them again.

The span and log queues (agent/export/queue.py) report each batch's outcome here; the first failed
batch after a success (or at start) logs "collector ... unreachable; dropping spans and logs,
counted in ...", the first success after a failure logs "reachable again". The OTel SDK's own
per-attempt retry lines are rate-limited separately (`SdkLineLimiter`), so a dead collector makes
one clear line, not a stream.
"""

from __future__ import annotations

import logging
import threading
import time

from agent.redaction.url_credentials import display_url

log = logging.getLogger("bcgov.agent")


class CollectorHealth:
    """Reachability of one OTLP endpoint, as seen by its exports (spans and logs alike).

    `failed(what, n)` and `exported(what, n)` are called from the export threads with the batch's
    kind ("spans" or "logs") and size; lines go to the `bcgov.agent` logger (WARNING / INFO)."""

    def __init__(self, endpoint: str) -> None:
        self._endpoint = display_url(endpoint)  # userinfo and tokens masked
        self._lock = threading.Lock()
        self._down = False

    @property
    def down(self) -> bool:
        return self._down

    def failed(self, what: str, n: int) -> None:
        with self._lock:
            if self._down:
                return
            self._down = True
        log.warning("OTLP collector %s unreachable (%d %s not sent): dropping spans and logs until it answers, "
                    "counted in bcgov_agent_spans_dropped_total and bcgov_agent_logs_dropped_total"
                    "{reason=\"export_failed\"}; check the collector and otlp_endpoint", self._endpoint, n, what)

    def exported(self, what: str, n: int) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        log.info("OTLP collector %s reachable again (%d %s sent)", self._endpoint, n, what)


class SdkLineLimiter(logging.Filter):
    """Lets through at most one record per `interval_s` from each `opentelemetry.*` logger (its
    exporters log every retry of every batch: 19 lines in 25 s against a dead collector); records
    of other loggers pass untouched. The next record let through says how many were held back."""

    def __init__(self, interval_s: float = 60.0, prefix: str = "opentelemetry.") -> None:
        super().__init__()
        self._interval = interval_s
        self._prefix = prefix
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        now = time.monotonic()
        with self._lock:
            last = self._last.get(record.name)
            if last is not None and now - last < self._interval:
                self._held[record.name] = self._held.get(record.name, 0) + 1
                return False
            self._last[record.name] = now
            held = self._held.pop(record.name, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} similar lines held back in the last {self._interval:g}s)"
            record.args = None
        return True
