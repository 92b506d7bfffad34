"""Metrics read from the probes' BPF maps at scrape time (a prometheus_client Collector).

Counts live in the kernel, so they are exact whatever the event rate; this collector only sums
map entries into label sets built by the `Enricher`. Every keyed map (per cgroup, per 4-tuple, per
exit status) is drained with lookup-and-delete batches into cumulative counters here, so the
kernel maps hold only what changed since the last scrape and never fill with the keys of pods
that are long gone. The cumulative counters admit label sets through the `SeriesGuard`, so they
hold at most budget + 1 label sets per family, and `forget` drops the ones of expired pods.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.identity.enricher import Enricher
from agent.kernel.loader import LoadedProbe
from agent.metrics.series_guard import LabelValues, SeriesGuard
from probes import tcp_lifecycle, tcp_reset
from probes.records import ip_from_bytes

log = logging.getLogger("bcgov.agent.metrics")

STAT_EMITTED, STAT_LOST, STAT_MAP_FULL, STAT_UNTRACKED = 0, 1, 2, 3
EXIT_STATUS = {0: "unknown", 1: "exited", 2: "signaled"}


def _int(v: Any) -> int:
    # scalar keys and values come back as ctypes from items() and as ints from the batch ops
    return int(getattr(v, "value", v))


def drain_entries(table: Any) -> list[tuple[Any, Any]]:
    """Read and delete every (key, value) of a BPF hash, atomically per batch where the kernel can."""
    try:
        return list(table.items_lookup_and_delete_batch())
    except Exception:  # pre-5.6 kernels lack batch ops: read, then delete what was read
        out = []
        for k, v in list(table.items()):
            out.append((k, v))
            try:
                del table[k]
            except KeyError:
                pass
        return out


def drain(table: Any) -> list[tuple[Any, int]]:
    """`drain_entries` of a counter map: values as ints, keys as the table's own key type."""
    # batch ops hand scalar keys back as ints: make every key the table's own key type
    return [(table.Key(k) if isinstance(k, int) else k, _int(v)) for k, v in drain_entries(table)]


class _Cumulative:
    """One counter family fed by drained deltas: the totals Prometheus needs to stay monotonic,
    for the label sets the guard admits plus its overflow series."""

    def __init__(self, name: str, documentation: str, labels: Iterable[str], guard: SeriesGuard) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self._guard = guard
        self.totals: dict[LabelValues, int] = defaultdict(int)

    def add_all(self, deltas: Mapping[LabelValues, int]) -> None:
        """Add one drain's deltas, already summed per label set."""
        for values, n in deltas.items():
            self.totals[self._guard.admit(self.name, self.labels, values)] += n

    def forget(self, label_sets: Iterable[LabelValues]) -> None:
        for values in label_sets:
            self.totals.pop(values, None)

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for values, n in sorted(self.totals.items()):
            fam.add_metric(list(values), float(n))
        return fam


def _summed(pairs: Iterable[tuple[LabelValues, int]]) -> dict[LabelValues, int]:
    sums: dict[LabelValues, int] = defaultdict(int)
    for labels, n in pairs:
        sums[labels] += n
    return sums


class KernelCollector(Collector):
    """Yields fresh metric families from the loaded probes' maps on every collect()."""

    def __init__(
        self,
        probes: Mapping[str, LoadedProbe],
        known_probes: Iterable[str],
        enricher: Enricher,
        received: Callable[[str], int],
        guard: SeriesGuard | None = None,
    ) -> None:
        self._probes = probes
        self._known = list(known_probes)
        self._enricher = enricher
        self._received = received
        self._lock = threading.Lock()
        e, g = enricher, guard or SeriesGuard()
        self._connections = _Cumulative(
            "bcgov_tcp_connections", "Finished TCP connections by direction and outcome, counted in the kernel.",
            ["direction", "outcome", *e.label_names], g,
        )
        self._retransmits = _Cumulative(
            "bcgov_tcp_retransmits", "TCP segments retransmitted, counted in the kernel per connection and summed by workload.",
            [*e.label_names, *e.peer_label_names], g,
        )
        self._resets = _Cumulative(
            "bcgov_tcp_resets", "TCP resets sent and received, counted in the kernel.",
            ["direction", *e.label_names, *e.peer_label_names], g,
        )
        self._execs = _Cumulative("bcgov_process_execs", "Successful execs, counted in the kernel.", e.label_names, g)
        self._exits = _Cumulative(
            "bcgov_process_exits", "Process exits by status (ok, error, signaled, unknown), counted in the kernel.", ["status"], g
        )
        self._ooms = _Cumulative(
            "bcgov_oom_kills", "OOM killer victims, counted in the kernel; pod shown for every workload kind.", e.label_names, g
        )
        self._before_agent = _Cumulative(
            "bcgov_tcp_connections_before_agent",
            "Finished TCP connections that were open when the agent started (learnt through sock_diag; "
            "no duration), counted in the kernel.",
            ["direction", "outcome", *e.label_names], g,
        )
        self._cumulatives = (self._connections, self._retransmits, self._resets, self._execs, self._exits, self._ooms,
                             self._before_agent)
        #: Called with (table, key, count) for every drained map entry, before it is labelled: the
        #: raw kernel counts, for debugging and for tests that count one cgroup's events exactly.
        self.taps: list[Callable[[str, Any, int], None]] = []

    def _drain(self, p: LoadedProbe, table: str) -> list[tuple[Any, int]]:
        entries = drain(p.bpf[table])
        for tap in self.taps:
            for k, n in entries:
                tap(table, k, n)
        return entries

    def forget(self, released: Mapping[str, Iterable[LabelValues]]) -> None:
        """Drop the cumulative series the guard released (their pods are gone)."""
        with self._lock:
            for c in self._cumulatives:
                if c.name in released:
                    c.forget(released[c.name])

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # scrapes may overlap; draining must not
            yield from self._agent_families()
            if "tcp_lifecycle" in self._probes:
                yield from self._tcp_lifecycle(self._probes["tcp_lifecycle"])
            if "tcp_retransmit" in self._probes:
                yield self._tcp_retransmits(self._probes["tcp_retransmit"])
            if "tcp_reset" in self._probes:
                yield self._tcp_resets(self._probes["tcp_reset"])
            if "process" in self._probes:
                yield from self._process(self._probes["process"])
            if "oom" in self._probes:
                yield self._oom(self._probes["oom"])

    def _agent_families(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("bcgov_agent_probe_up", "1 when the probe is loaded and attached.", labels=["probe"])
        events = CounterMetricFamily("bcgov_agent_events", "Records received from the kernel by the agent.", labels=["probe"])
        lost = CounterMetricFamily(
            "bcgov_agent_events_lost", "Records the kernel could not hand over (ring buffer full), counted in the kernel.", labels=["probe"]
        )
        full = CounterMetricFamily("bcgov_agent_map_full", "Inserts refused by a full BPF map.", labels=["probe"])
        for name in self._known:
            p = self._probes.get(name)
            up.add_metric([name], 1.0 if p is not None and p.bpf is not None else 0.0)
            if p is None or p.bpf is None:
                continue
            if p.plan.spec.ring_buffer:
                events.add_metric([name], float(self._received(name)))
                lost.add_metric([name], float(p.stat(STAT_LOST)))
            full.add_metric([name], float(p.stat(STAT_MAP_FULL)))
        yield from (up, events, lost, full)

    def _connection_counts(self, p: LoadedProbe, table: str) -> dict[LabelValues, int]:
        """A (cgroup, direction, outcome, port) counter map as deltas per label set; the port (a
        passive end's listening port, else 0) gives the server's tier."""
        e = self._enricher
        return _summed(
            (
                (
                    tcp_lifecycle.DIRECTIONS.get(k.direction, "unknown"),
                    tcp_lifecycle.KERNEL_OUTCOMES.get(k.outcome, "unknown"),
                    *e.workload_labels(k.cgroup_id, k.port or None),
                ),
                n,
            )
            for k, n in self._drain(p, table)
        )

    def _tcp_lifecycle(self, p: LoadedProbe) -> Iterable[Metric]:
        self._connections.add_all(self._connection_counts(p, "tcp_connections"))
        yield self._connections.family()
        self._before_agent.add_all(self._connection_counts(p, "tcp_connections_before_agent"))
        yield self._before_agent.family()

        opened = CounterMetricFamily(
            "bcgov_tcp_connections_opened", "TCP connections opened (SYN sent or received), counted in the kernel.", labels=["direction"]
        )
        opens = p.bpf["tcp_opens"]
        for idx, direction in tcp_lifecycle.DIRECTIONS.items():
            opened.add_metric([direction], float(sum(opens[idx])))
        yield opened
        untracked = CounterMetricFamily(
            "bcgov_tcp_untracked_closes",
            "TCP closes of connections the probe never saw open and the start-up socket list did not name "
            "(opened between that list and the probe's attach, or map full); no record sent.",
        )
        untracked.add_metric([], float(p.stat(STAT_UNTRACKED)))
        yield untracked

    def _listener_cgroups(self) -> dict[int, int]:
        """Local port -> the one cgroup listening on it, from tcp_lifecycle's `listeners` map (ports
        several cgroups listen on name no owner there): a 4-tuple counter's local end is then
        labelled as that process, as in bcgov_tcp_connections_total."""
        p = self._probes.get("tcp_lifecycle")
        if p is None or p.bpf is None:
            return {}
        try:
            return {_int(k): int(v.owner.cgroup_id) for k, v in p.bpf["listeners"].items() if v.owner.cgroup_id}
        except KeyError:
            return {}

    def _tcp_retransmits(self, p: LoadedProbe) -> Metric:
        e = self._enricher
        owners = self._listener_cgroups()
        deltas = []
        for k, n in self._drain(p, "tcp_retransmits"):
            local = ip_from_bytes(k.family, bytes(k.saddr))
            remote = ip_from_bytes(k.family, bytes(k.daddr))
            deltas.append(((*e.endpoint_labels(local, k.sport, owners.get(k.sport, 0)),
                            *e.peer_labels(remote, k.dport)), n))
        self._retransmits.add_all(_summed(deltas))
        return self._retransmits.family()

    def _tcp_resets(self, p: LoadedProbe) -> Metric:
        e = self._enricher
        owners = self._listener_cgroups()
        deltas = []
        for k, n in self._drain(p, "tcp_resets"):
            t = tcp_reset.decode_key(k)
            labels = (
                t.direction,
                *e.endpoint_labels(t.local_addr, t.local_port, owners.get(t.local_port, 0)),
                *e.peer_labels(t.remote_addr, t.remote_port),
            )
            deltas.append((labels, n))
        self._resets.add_all(_summed(deltas))
        return self._resets.family()

    def _process(self, p: LoadedProbe) -> Iterable[Metric]:
        e = self._enricher
        self._execs.add_all(_summed((e.workload_labels(_int(k)), n) for k, n in self._drain(p, "process_execs")))
        yield self._execs.family()
        deltas = []
        for k, n in self._drain(p, "process_exits"):
            kind = EXIT_STATUS.get(k.kind, "unknown")
            status = ("ok" if (k.code & 0xFF) == 0 else "error") if kind == "exited" else kind
            deltas.append(((status,), n))
        self._exits.add_all(_summed(deltas))
        yield self._exits.family()

    def _oom(self, p: LoadedProbe) -> Metric:
        e = self._enricher
        # OOM kills are rare and each one matters: the pod is named whatever its workload kind.
        self._ooms.add_all(_summed((e.workload_labels(_int(k), per_pod=True), n) for k, n in self._drain(p, "oom_kills")))
        return self._ooms.family()
