"""Exemplars for an in-kernel histogram declared with `exemplars=True` (probes/families.py).

The kernel counts every connection's duration (a `HistogramFamily` map); user space only sees the
records that reach it, and keeps a span for some of them. For each kept span the pipeline
remembers its trace_id/span_id and duration under the histogram map's *key* (raw kernel codes, in
a type the probe's module provides with the key struct's field names), not under a label set: the collector labels that key at
scrape with the same decoders as the drained keys (agent/metrics/collectors.py), so the exemplar's
label set cannot differ from its series'. The slot is the kernel's (probes/latency_hist.py
`hist_slot`). Between scrapes at most `max_pending` are held per family.

Each such family has its own store (`Exemplars.for_family(name)`): a handler binds the store of the
family its exemplars belong to once, and the collector takes each family's from its own, so two
histograms with exemplars never get each other's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from prometheus_client.samples import Exemplar

from probes.latency_hist import hist_slot

DEFAULT_MAX_PENDING = 16384
#: Slot count for the pending table's own key: above any histogram's, so two durations share a
#: pending entry only when they share a slot of every histogram; `take` caps to the family's slots.
_UNCAPPED = 64


class DurationExemplars:
    """The latest kept span per (map key, slot) since the last scrape."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._max = max_pending
        self._lock = threading.Lock()
        self._pending: dict[tuple[Hashable, int], tuple[str, str, int, float]] = {}

    def remember(self, key: Hashable, duration_ns: int, trace_id: str, span_id: str) -> None:
        """Note a kept span of a connection that lasted `duration_ns` (the kernel's own delta);
        `key` has the attribute names of the histogram map's key struct."""
        slot = hist_slot(duration_ns, _UNCAPPED)
        pending = (key, slot)
        # A plain tuple per record; the Exemplar (a dict and a namedtuple) is built only for the
        # one per bucket that a scrape hands over (take), not for every kept span.
        noted = (trace_id, span_id, duration_ns, time.time())
        with self._lock:
            # A full table keeps what it has: more label sets between two scrapes than the series
            # budgets admit would be folded anyway.
            if pending in self._pending or len(self._pending) < self._max:
                self._pending[pending] = noted

    def take(self, slot_count: int) -> list[tuple[Hashable, int, Exemplar]]:
        """Hand over (and forget) what was remembered since the last call: (key, slot of a
        `slot_count`-slot histogram, exemplar), the latest one per (key, slot)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        latest: dict[tuple[Hashable, int], tuple[str, str, int, float]] = {}
        for (key, slot), noted in pending.items():
            capped = (key, min(slot, slot_count - 1))
            if capped not in latest or latest[capped][3] <= noted[3]:
                latest[capped] = noted
        return [(key, slot, Exemplar({"trace_id": t, "span_id": s}, d / 1e9, ts))
                for (key, slot), (t, s, d, ts) in latest.items()]

    def __len__(self) -> int:
        return len(self._pending)


class Exemplars:
    """One `DurationExemplars` store per histogram family (by family name), made when first asked for."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._max = max_pending
        self._lock = threading.Lock()
        self._stores: dict[str, DurationExemplars] = {}

    def for_family(self, name: str) -> DurationExemplars:
        """The store of family `name` (the same one on every call): bind its `remember` once."""
        with self._lock:
            store = self._stores.get(name)
            if store is None:
                store = self._stores[name] = DurationExemplars(self._max)
            return store

    def take(self, name: str, slot_count: int) -> list[tuple[Hashable, int, Exemplar]]:
        """`DurationExemplars.take` of family `name`'s store; empty when nothing remembers for it."""
        with self._lock:
            store = self._stores.get(name)
        return store.take(slot_count) if store is not None else []
