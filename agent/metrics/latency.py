"""Latency histograms kept in the kernel (block_io, runqueue, tcp_lifecycle's connection
durations), exported at scrape time.

The probes add every observation to a log2 histogram per label set in a BPF map
(probes/bcgov_hist.h). Each scrape drains those maps with lookup-and-delete batches into
cumulative per-label state here, so the kernel maps hold only what changed since the last scrape
and the exported buckets, counts and sums only ever grow. With a `SeriesGuard`, label sets are
admitted at the source, so this state holds at most budget + 1 label sets per family, and
`forget` drops those of expired pods (agent/metrics/series_expiry.py). Connection-duration buckets carry
the latest kept span's trace_id/span_id as their exemplar (agent/metrics/exemplars.py).
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping, Sequence

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agent.identity.block_devices import BlockDeviceResolver
from agent.identity.enricher import Enricher
from agent.metrics.exemplars import DurationExemplars
from agent.metrics.kernel import drain_entries
from agent.kernel.loader import LoadedProbe
from agent.metrics.series_guard import LabelValues, SeriesGuard
from probes import tcp_lifecycle
from probes.block_io import OPS, dev_major_minor
from probes.latency_hist import HIST_SLOTS

#: The last kernel slot is the overflow: it only counts towards +Inf.
FINITE_SLOTS = HIST_SLOTS - 1

BLOCK_IO_DEVICE_LABELS = ("device", "op", "mount", "pvc", "pvc_namespace")


def slot_upper_bound_seconds(slot: int) -> float:
    """The `le` of a log2 slot: every latency in slot s is below 2^s microseconds."""
    return (1 << slot) / 1e6


def bucket_bounds(slot_count: int) -> tuple[str, ...]:
    """The `le` labels of a histogram of `slot_count` log2 slots; the last slot is +Inf only."""
    return tuple(floatToGoString(slot_upper_bound_seconds(s)) for s in range(slot_count - 1)) + ("+Inf",)


BUCKET_BOUNDS: tuple[str, ...] = bucket_bounds(HIST_SLOTS)
_BOUNDS = {HIST_SLOTS: BUCKET_BOUNDS, tcp_lifecycle.DURATION_SLOTS: bucket_bounds(tcp_lifecycle.DURATION_SLOTS)}


def cumulative_buckets(
    slots: Sequence[int], slot_count: int = HIST_SLOTS, exemplars: Mapping[int, Exemplar] | None = None
) -> list[tuple[Any, ...]]:
    """Per-slot counts (slot_count of them) -> Prometheus cumulative (le, count) pairs ending at
    +Inf; a slot with an exemplar gives an (le, count, exemplar) triple."""
    if len(slots) != slot_count:
        raise ValueError(f"expected {slot_count} log2 slots, got {len(slots)}: BCGOV_HIST_SLOTS in the probe and "
                         "probes/latency_hist.py (HIST_SLOTS) or probes/tcp_lifecycle.py (DURATION_SLOTS) disagree")
    bounds = _BOUNDS.get(slot_count) or bucket_bounds(slot_count)
    out: list[tuple[Any, ...]] = []
    running = 0
    for i, (le, n) in enumerate(zip(bounds, slots)):
        running += n
        ex = exemplars.get(i) if exemplars else None
        out.append((le, float(running), ex) if ex is not None else (le, float(running)))
    return out


class HistogramState:
    """Cumulative log2 histograms per label set of one family, fed by drained kernel deltas."""

    def __init__(
        self, name: str, documentation: str, label_names: Sequence[str], guard: SeriesGuard | None = None,
        slot_count: int = HIST_SLOTS,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self._guard = guard
        self.slot_count = slot_count
        self.slots: dict[LabelValues, list[int]] = {}
        self.sum_ns: dict[LabelValues, int] = {}
        # Latest exemplar per slot, only for label sets held here (admitted or the overflow
        # series), so at most (budget + 1) * slot_count of them.
        self.exemplars: dict[LabelValues, dict[int, Exemplar]] = {}

    def add(self, labels: LabelValues, slots: Sequence[int], sum_ns: int) -> None:
        """Add one drained delta (per-slot counts and their sum in nanoseconds)."""
        if self._guard is not None:
            labels = self._guard.admit(self.name, self.label_names, labels)
        acc = self.slots.setdefault(labels, [0] * self.slot_count)
        for i, n in enumerate(slots):
            acc[i] += int(n)
        self.sum_ns[labels] = self.sum_ns.get(labels, 0) + int(sum_ns)

    def attach_exemplar(self, labels: LabelValues, slot: int, exemplar: Exemplar) -> None:
        """Make `exemplar` the latest of `slot` of `labels`. Only label sets the drains admitted
        get one (the overflow series' exemplars would be dropped by the exposition's fold anyway),
        so exemplars never make series of their own."""
        if labels in self.slots and 0 <= slot < self.slot_count:
            self.exemplars.setdefault(labels, {})[slot] = exemplar

    def forget(self, label_sets: Iterable[LabelValues]) -> None:
        """Drop label sets (of expired pods) so they are no longer exported."""
        for values in label_sets:
            self.slots.pop(values, None)
            self.sum_ns.pop(values, None)
            self.exemplars.pop(values, None)

    def family(self) -> HistogramMetricFamily:
        """The state as one histogram family, `le` in seconds."""
        fam = HistogramMetricFamily(self.name, self.documentation, labels=list(self.label_names))
        for labels in sorted(self.slots):
            buckets = cumulative_buckets(self.slots[labels], self.slot_count, self.exemplars.get(labels))
            fam.add_metric(list(labels), buckets, self.sum_ns[labels] / 1e9)
        return fam


DURATION = "bcgov_tcp_connection_duration_seconds"


class LatencyCollector(Collector):
    """bcgov_block_io_latency_seconds, bcgov_runqueue_latency_seconds and
    bcgov_tcp_connection_duration_seconds from the kernel maps."""

    def __init__(
        self,
        probes: Mapping[str, LoadedProbe],
        enricher: Enricher,
        devices: BlockDeviceResolver | None = None,
        guard: SeriesGuard | None = None,
        duration_exemplars: DurationExemplars | None = None,
    ) -> None:
        self._probes = probes
        self._enricher = enricher
        self._devices = devices or BlockDeviceResolver()
        self._lock = threading.Lock()
        self._exemplars = duration_exemplars
        self.duration = HistogramState(
            DURATION,
            "Duration of finished TCP connections, from SYN to close, measured in the kernel (every connection, "
            "also when its record is lost); exemplars carry a kept span's trace_id.",
            ["direction", "outcome", *enricher.label_names],
            guard,
            tcp_lifecycle.DURATION_SLOTS,
        )
        self._block = HistogramState(
            "bcgov_block_io_latency_seconds",
            "Block request latency from issue to completion, measured in the kernel, by device and workload.",
            [*BLOCK_IO_DEVICE_LABELS, *enricher.label_names],
            guard,
        )
        self._runq = HistogramState(
            "bcgov_runqueue_latency_seconds",
            "Time runnable tasks waited for a CPU, measured in the kernel, by workload.",
            enricher.label_names,
            guard,
        )

    def forget(self, released: Mapping[str, Iterable[LabelValues]]) -> None:
        """Drop released label sets (by family name) from the cumulative state."""
        with self._lock:
            for state in (self._block, self._runq, self.duration):
                state.forget(released.get(state.name, ()))

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # scrapes may overlap; draining must not
            block = self._probes.get("block_io")
            if block is not None and block.bpf is not None:
                yield self._block_io(block)
            runq = self._probes.get("runqueue")
            if runq is not None and runq.bpf is not None:
                yield self._runqueue(runq)
            tcp = self._probes.get("tcp_lifecycle")
            if tcp is not None and tcp.bpf is not None:
                yield self._durations(tcp)

    def _block_io(self, p: LoadedProbe) -> Metric:
        e = self._enricher
        for k, v in drain_entries(p.bpf["block_io_latency"]):
            dev = self._devices.describe(*dev_major_minor(k.dev))
            labels = (dev.device, OPS.get(k.op, "other"), dev.mount, dev.pvc, dev.pvc_namespace,
                      *e.workload_labels(k.cgroup_id))
            self._block.add(labels, v.slots, v.sum_ns)
        return self._block.family()

    def _runqueue(self, p: LoadedProbe) -> Metric:
        e = self._enricher
        for k, v in drain_entries(p.bpf["runqueue_latency"]):
            # batch reads give a u64 key as an int, item reads as c_ulong
            self._runq.add(e.workload_labels(int(getattr(k, "value", k))), v.slots, v.sum_ns)
        return self._runq.family()

    def _durations(self, p: LoadedProbe) -> Metric:
        e = self._enricher
        for k, v in drain_entries(p.bpf["tcp_connection_durations"]):
            labels = (
                tcp_lifecycle.DIRECTIONS.get(k.direction, "unknown"),
                tcp_lifecycle.DURATION_OUTCOMES.get(k.outcome, "unknown"),
                *e.workload_labels(k.cgroup_id, k.port or None),
            )
            self.duration.add(labels, v.slots, v.sum_ns)
        # After the drain: a kept span's connection was counted in the kernel before its record
        # was read, so its label set is held by now.
        if self._exemplars is not None:
            for labels, slot, exemplar in self._exemplars.take():
                self.duration.attach_exemplar(labels, slot, exemplar)
        return self.duration.family()
