"""A bounded queue between the event readers and the span exporter thread.

The reader never blocks on export: when the queue is full a span is dropped and counted, and a
failed export counts the whole batch as dropped. Flushed on shutdown.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable

from agent.spans import SpanData, SpanExporter


class SpanQueue:
    """Batches spans to one exporter on a background thread."""

    def __init__(
        self,
        exporter: SpanExporter,
        on_drop: Callable[[str, int], None],
        on_export: Callable[[int], None] = lambda n: None,
        max_queue: int = 16384,
        max_batch: int = 512,
        interval_s: float = 1.0,
    ) -> None:
        self._exporter = exporter
        self._on_drop = on_drop
        self._on_export = on_export
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._interval = interval_s
        self._buf: collections.deque[SpanData] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="bcgov-span-export", daemon=True)
        self._thread.start()

    def submit(self, span: SpanData) -> None:
        """Queue a span; drop and count it when the queue is full."""
        with self._cond:
            if len(self._buf) >= self._max_queue:
                dropped = True
            else:
                dropped = False
                self._buf.append(span)
                if len(self._buf) >= self._max_batch:
                    self._cond.notify()
        if dropped:
            self._on_drop("queue_full", 1)

    def _take(self) -> list[SpanData]:
        n = min(len(self._buf), self._max_batch)
        return [self._buf.popleft() for _ in range(n)]

    def _run(self) -> None:
        while True:
            with self._cond:
                if len(self._buf) < self._max_batch and not self._stopping:
                    self._cond.wait(self._interval)
                batch = self._take()
                done = self._stopping and not self._buf
            if batch:
                if self._exporter.export(batch):
                    self._on_export(len(batch))
                else:
                    self._on_drop("export_failed", len(batch))
            if done:
                return

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Export what is queued, then stop the thread and the exporter."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout_s)
        self._exporter.shutdown()
