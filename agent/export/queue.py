"""A bounded queue between the event readers and the span exporter thread.

The reader never blocks on export: when the queue is full a span is dropped and counted
(queue_full), and a failed export counts the whole batch as dropped (export_failed). Retrying with
backoff is the exporter's job and is bounded by its timeout (the OTLP exporters retry transient
errors until then), so a dead collector holds up only this thread, one batch at a time, while the
queue fills and then drops. On shutdown the queue is flushed for at most `flush_timeout_s`; then
the exporter is shut down (which aborts a retry in progress) and what is still queued is counted
as dropped (shutdown). Every submitted span ends up counted exactly once:
submitted = exported + dropped (all reasons) + queued.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

Item = TypeVar("Item")  # a span (agent/export/span_model.py) or an event log line (agent/export/otlp_logs.py)
Item_contra = TypeVar("Item_contra", contravariant=True)


class BatchExporter(Protocol[Item_contra]):
    """Ships a batch; returns False on failure (the queue counts the loss). SpanExporter is one."""

    def export(self, batch: Sequence[Item_contra], /) -> bool: ...

    def shutdown(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class SpanQueueStats:
    """A consistent snapshot of the queue's accounting."""

    submitted: int
    exported: int
    dropped: dict[str, int]
    queued: int  # waiting or in an export that has not returned yet

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class SpanQueue(Generic[Item]):
    """Batches spans (or log lines) to one exporter on a background thread."""

    def __init__(
        self,
        exporter: BatchExporter[Item],
        on_drop: Callable[[str, int], None],
        on_export: Callable[[int], None] = lambda n: None,
        max_queue: int = 16384,
        max_batch: int = 512,
        interval_s: float = 1.0,
        flush_timeout_s: float = 5.0,
    ) -> None:
        self._exporter = exporter
        self._on_drop = on_drop
        self._on_export = on_export
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._interval = interval_s
        self._flush_timeout = flush_timeout_s
        self._buf: collections.deque[Item] = collections.deque()
        # submit() takes the plain lock (a C-level `with`); Condition.__enter__ is Python code
        # and cost ~1 us per span on the reader thread. Both guard the same state.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stopping = False
        self._aborted = False
        self._submitted = 0
        self._exported = 0
        self._in_flight = 0
        self._dropped: collections.Counter[str] = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="bcgov-span-export", daemon=True)
        self._thread.start()

    def submit(self, span: Item) -> None:
        """Queue a span; drop and count it when the queue is full."""
        with self._lock:
            self._submitted += 1
            dropped = len(self._buf) >= self._max_queue or self._aborted
            if dropped:
                self._dropped["queue_full"] += 1
            else:
                self._buf.append(span)
                if len(self._buf) >= self._max_batch:
                    self._cond.notify()
        if dropped:
            self._on_drop("queue_full", 1)

    def stats(self) -> SpanQueueStats:
        """Submitted, exported, dropped by reason and still queued, all from the same instant."""
        with self._cond:
            return SpanQueueStats(
                self._submitted, self._exported, dict(self._dropped), len(self._buf) + self._in_flight
            )

    def _take(self) -> list[Item]:
        n = min(len(self._buf), self._max_batch)
        return [self._buf.popleft() for _ in range(n)]

    def _run(self) -> None:
        while True:
            with self._cond:
                if len(self._buf) < self._max_batch and not self._stopping:
                    self._cond.wait(self._interval)
                if self._aborted:
                    self._drop_rest_locked()
                    return
                batch = self._take()
                self._in_flight = len(batch)
                done = self._stopping and not self._buf
            if batch:
                ok = self._exporter.export(batch)
                with self._cond:
                    self._in_flight = 0
                    if ok:
                        self._exported += len(batch)
                    else:
                        self._dropped["export_failed"] += len(batch)
                if ok:
                    self._on_export(len(batch))
                else:
                    self._on_drop("export_failed", len(batch))
            if done:
                return

    def _drop_rest_locked(self) -> None:
        n = len(self._buf)
        self._buf.clear()
        if n:
            self._dropped["shutdown"] += n
            self._on_drop("shutdown", n)

    def shutdown(self) -> None:
        """Export what is queued within the flush timeout, then stop the thread and the exporter.

        Returns within about flush_timeout_s + the time an aborted export takes to notice (the
        OTLP exporters' shutdown cancels their retry wait and closes the channel)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(self._flush_timeout)
        if self._thread.is_alive():
            with self._cond:
                self._aborted = True
            self._exporter.shutdown()
            self._thread.join(self._flush_timeout)
            with self._cond:  # the thread may still sit in an export that will not return
                self._drop_rest_locked()
            return
        self._exporter.shutdown()
