"""Reader threads: take records off each probe's ring buffer, decode them, hand them on.

The ring buffer is the bounded queue between kernel and agent: when the reader falls behind, the
kernel drops and counts (bcgov_agent_events_lost_total) instead of the reader blocking anything.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from agent.kernel.loader import LoadedProbe

log = logging.getLogger("bcgov.agent.kernel.readers")

MAX_ERRORS_LOGGED = 10  # per reader; every failure is counted all the same


class ReaderCounters(Protocol):
    """The reader's own counts (agent/metrics/instruments.py Instruments has them)."""

    handler_errors: Any  # a prometheus Counter labelled by probe

    def received(self, probe: str, n: int = 1) -> None: ...


class RingBufferReader:
    """Polls one probe's ring buffer on its own thread until stopped, then drains it."""

    def __init__(
        self,
        probe: LoadedProbe,
        handle: Callable[[object], None],
        instruments: ReaderCounters,
        poll_timeout_ms: int = 20,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        spec = probe.plan.spec
        if not spec.ring_buffer or spec.decoder is None:
            raise ValueError(f"probe {spec.name} has no ring buffer to read")
        self._probe = probe
        self._decode = spec.decoder
        self._handle = handle
        self._instruments = instruments
        self._timeout = poll_timeout_ms
        # Called after each poll has handled what was there: the runtime writes out batched log
        # lines there, straight to the event log (the data only flows on, never back).
        self._after_batch = after_batch or (lambda: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bcgov-read-{spec.name}", daemon=True)
        self._errors_logged = 0
        self._discard = False
        probe.bpf[spec.ring_buffer].open_ring_buffer(self._on_record)

    def _on_record(self, _ctx: object, data: int, size: int) -> int:
        if self._discard:
            return 0
        name = self._probe.name
        self._instruments.received(name)
        step = "decode"
        try:
            event = self._decode(ctypes.string_at(data, size))
            step = "handle"
            self._handle(event)
        except Exception:  # one bad record must not stop the reader
            self._instruments.handler_errors.labels(name).inc()
            self._log_error(f"probe {name}: failed to {step} a record ({size} bytes)")
        return 0

    def _log_error(self, what: str) -> None:
        """The first MAX_ERRORS_LOGGED failures with their traceback, then one line saying the rest
        are only counted (bcgov_agent_handler_errors_total): a broken handler must not flood the log."""
        if self._errors_logged < MAX_ERRORS_LOGGED:
            self._errors_logged += 1
            log.exception("%s", what)
            if self._errors_logged == MAX_ERRORS_LOGGED:
                log.error("probe %s: %d failures logged; further ones are only counted in "
                          "bcgov_agent_handler_errors_total{probe=\"%s\"}", self._probe.name, MAX_ERRORS_LOGGED,
                          self._probe.name)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def _run(self) -> None:
        bpf = self._probe.bpf
        after = self._after_batch
        while not self._stop.is_set():
            bpf.ring_buffer_poll(self._timeout)
            # Probes that submit without a wakeup (tcp_lifecycle) are read here, once per timeout.
            bpf.ring_buffer_consume()
            self._flush(after)
        bpf.ring_buffer_consume()  # whatever arrived before the probes were detached
        self._flush(after)

    def _flush(self, after: Callable[[], None]) -> None:
        try:
            after()
        except Exception:  # a full disk must not stop the reader; the next batch tries again
            self._log_error(f"probe {self._probe.name}: after-batch hook failed")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop polling after draining what is already in the buffer; past ``timeout_s`` the rest
        is discarded. Returns only once the thread is done: the caller frees the ring buffer next,
        and freeing it under a running poll crashes the process."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("probe %s: reader still draining after %.0fs; discarding the rest", self._probe.name, timeout_s)
            self._discard = True
            self._thread.join()
