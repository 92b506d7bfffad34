"""Latency histograms kept in the kernel (block_io, runqueue), exported at scrape time.

The probes add every observation to a log2 histogram per label set in a BPF map
(probes/bcgov_hist.h). Each scrape drains those maps with lookup-and-delete batches into
cumulative per-label state here, so the kernel maps hold only what changed since the last scrape
and the exported buckets, counts and sums only ever grow. With a `SeriesGuard`, label sets are
admitted at the source, so this state holds at most budget + 1 label sets per family, and
`forget` drops those of expired pods (agent/series_expiry.py).
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping, Sequence

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agent.block_devices import BlockDeviceResolver
from agent.enrich import Enricher
from agent.loader import LoadedProbe
from agent.series_guard import LabelValues, SeriesGuard
from probes.block_io import OPS, dev_major_minor
from probes.latency_hist import HIST_SLOTS

#: The last kernel slot is the overflow: it only counts towards +Inf.
FINITE_SLOTS = HIST_SLOTS - 1

BLOCK_IO_DEVICE_LABELS = ("device", "op", "mount", "pvc", "pvc_namespace")


def slot_upper_bound_seconds(slot: int) -> float:
    """The `le` of a log2 slot: every latency in slot s is below 2^s microseconds."""
    return (1 << slot) / 1e6


BUCKET_BOUNDS: tuple[str, ...] = tuple(floatToGoString(slot_upper_bound_seconds(s)) for s in range(FINITE_SLOTS)) + ("+Inf",)


def cumulative_buckets(slots: Sequence[int]) -> list[tuple[str, float]]:
    """Per-slot counts (HIST_SLOTS of them) -> Prometheus cumulative (le, count) pairs ending at +Inf."""
    if len(slots) != HIST_SLOTS:
        raise ValueError(f"expected {HIST_SLOTS} log2 slots, got {len(slots)}: probes/bcgov_hist.h and "
                         "probes/latency_hist.py disagree")
    out, running = [], 0
    for le, n in zip(BUCKET_BOUNDS, slots):
        running += n
        out.append((le, float(running)))
    return out


class HistogramState:
    """Cumulative log2 histograms per label set of one family, fed by drained kernel deltas."""

    def __init__(self, name: str, documentation: str, label_names: Sequence[str], guard: SeriesGuard | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self._guard = guard
        self.slots: dict[LabelValues, list[int]] = {}
        self.sum_ns: dict[LabelValues, int] = {}

    def add(self, labels: LabelValues, slots: Sequence[int], sum_ns: int) -> None:
        """Add one drained delta (per-slot counts and their sum in nanoseconds)."""
        if self._guard is not None:
            labels = self._guard.admit(self.name, self.label_names, labels)
        acc = self.slots.setdefault(labels, [0] * HIST_SLOTS)
        for i, n in enumerate(slots):
            acc[i] += int(n)
        self.sum_ns[labels] = self.sum_ns.get(labels, 0) + int(sum_ns)

    def forget(self, label_sets: Iterable[LabelValues]) -> None:
        """Drop label sets (of expired pods) so they are no longer exported."""
        for values in label_sets:
            self.slots.pop(values, None)
            self.sum_ns.pop(values, None)

    def family(self) -> HistogramMetricFamily:
        """The state as one histogram family, `le` in seconds."""
        fam = HistogramMetricFamily(self.name, self.documentation, labels=list(self.label_names))
        for labels in sorted(self.slots):
            fam.add_metric(list(labels), cumulative_buckets(self.slots[labels]), self.sum_ns[labels] / 1e9)
        return fam


def drain_entries(table: Any) -> list[tuple[Any, Any]]:
    """Read and delete every (key, value) of a BPF hash, atomically per batch where the kernel can."""
    try:
        return list(table.items_lookup_and_delete_batch())
    except Exception:  # kernels without batch ops: read, then delete what was read
        out = []
        for k, v in list(table.items()):
            out.append((k, v))
            try:
                del table[k]
            except KeyError:
                pass
        return out


class LatencyCollector(Collector):
    """bcgov_block_io_latency_seconds and bcgov_runqueue_latency_seconds from the kernel maps."""

    def __init__(
        self,
        probes: Mapping[str, LoadedProbe],
        enricher: Enricher,
        devices: BlockDeviceResolver | None = None,
        guard: SeriesGuard | None = None,
    ) -> None:
        self._probes = probes
        self._enricher = enricher
        self._devices = devices or BlockDeviceResolver()
        self._lock = threading.Lock()
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
            for state in (self._block, self._runq):
                state.forget(released.get(state.name, ()))

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # scrapes may overlap; draining must not
            block = self._probes.get("block_io")
            if block is not None and block.bpf is not None:
                yield self._block_io(block)
            runq = self._probes.get("runqueue")
            if runq is not None and runq.bpf is not None:
                yield self._runqueue(runq)

    def _block_io(self, p: LoadedProbe) -> Metric:
        e = self._enricher
        for k, v in drain_entries(p.bpf["block_io_latency"]):
            dev = self._devices.describe(*dev_major_minor(k.dev))
            labels = (dev.device, OPS.get(k.op, "other"), dev.mount, dev.pvc, dev.pvc_namespace,
                      *e.labels_for_cgroup(k.cgroup_id))
            self._block.add(labels, v.slots, v.sum_ns)
        return self._block.family()

    def _runqueue(self, p: LoadedProbe) -> Metric:
        e = self._enricher
        for k, v in drain_entries(p.bpf["runqueue_latency"]):
            # batch reads give a u64 key as an int, item reads as c_ulong
            self._runq.add(e.labels_for_cgroup(int(getattr(k, "value", k))), v.slots, v.sum_ns)
        return self._runq.family()
