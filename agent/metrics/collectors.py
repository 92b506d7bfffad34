"""Metrics read from the probes' BPF maps at scrape time, built from each probe's declaration
(`ProbeSpec.metrics`, probes/families.py): one prometheus_client Collector for every probe.

Counts live in the kernel, so they are exact whatever the event rate. Every drained family's map
is read with lookup-and-delete into cumulative state here (agent/metrics/cumulative.py),
so the kernel maps hold only what changed since the last scrape; label sets are admitted through
the `SeriesGuard` and `forget` drops those of expired pods. Next to the probes' own families come
the agent's per-probe families: bcgov_agent_probe_up, _events, _events_lost and _map_full.

Nothing here knows a probe or a map by name: a new probe's families appear when its spec
declares them.

A family that cannot be read is left out of that scrape, logged and counted
(agent/metrics/scrape_errors.py); the other families are served. Draining stays one atomic
lookup-and-delete, and keys are labelled after it: decoding first would need a separate read and
delete, losing what the kernel adds between them. A key whose labels cannot be decoded keeps its
count in the family's `__overflow__` series, so the family's total stays exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.identity.block_devices import BlockDeviceResolver
from agent.identity.enricher import Enricher
from agent.kernel.loader import LoadedProbe
from agent.kernel.maps import drain, drain_entries, per_cpu_sum
from agent.metrics.cumulative import CounterState, HistogramState, summed
from agent.metrics.exemplars import Exemplars
from agent.metrics.labels import KeyLabels
from agent.metrics.scrape_errors import ScrapeErrors
from agent.metrics.series_guard import OVERFLOW, LabelValues, SeriesGuard
from probes import families as f
from probes.spec import ProbeSpec

#: Called with (table, key, count) for every drained counter-map entry, before it is labelled.
Tap = Callable[[str, Any, int], None]


class _Drained:
    """One drained family of one probe: its declaration, label decoder and cumulative state."""

    def __init__(self, probe: str, decl: f.CounterFamily | f.HistogramFamily, labels: KeyLabels,
                 state: CounterState | HistogramState) -> None:
        self.probe = probe
        self.decl = decl
        self.labels = labels
        self.state = state


class ProbeMetrics(Collector):
    """Yields fresh metric families from the loaded probes' maps on every collect().

    `specs`: every probe configured (their families' state is made up front, so label
    names are known before any probe loads); `probes`: the loaded ones by name, read at each
    scrape. `known` and `received`: the configured probe names and the records received per
    probe, for the agent's per-probe families (left out when `known` is None). `kinds`: only
    families of these declaration types (a second collector over the same probes, in tests).
    `errors`: what could not be read or labelled (agent/metrics/scrape_errors.py), exported with
    the agent's families. Raises ValueError when two specs declare a family of one name.
    """

    def __init__(
        self,
        specs: Iterable[ProbeSpec],
        probes: Mapping[str, LoadedProbe],
        enricher: Enricher,
        *,
        known: Iterable[str] | None = None,
        received: Callable[[str], int] | None = None,
        guard: SeriesGuard | None = None,
        devices: BlockDeviceResolver | None = None,
        exemplars: Exemplars | None = None,
        kinds: tuple[type, ...] = (f.CounterFamily, f.HistogramFamily, f.IndexedCounter, f.StatCounter),
    ) -> None:
        self._specs = tuple(specs)
        self._probes = probes
        self._known = None if known is None else list(known)
        self._received = received or (lambda _name: 0)
        self._exemplars = exemplars
        self._lock = threading.Lock()
        self.errors = ScrapeErrors()
        #: raw drained counter entries, for debugging and for tests that count one cgroup exactly
        self.taps: list[Tap] = []
        self._owners_now: dict[str, dict[int, int]] = {}
        guard = guard or SeriesGuard()
        devices = devices or BlockDeviceResolver()
        self._drained: list[_Drained] = []
        self._read: list[tuple[str, f.IndexedCounter | f.StatCounter]] = []
        self._port_owners = {d.name: (s.name, d) for s in self._specs for d in s.metrics if isinstance(d, f.PortOwners)}
        for spec in self._specs:
            for d in spec.metrics:
                if not isinstance(d, kinds):
                    continue
                if isinstance(d, (f.CounterFamily, f.HistogramFamily)):
                    labels = KeyLabels(d.labels, enricher, devices, self._owners)
                    state: CounterState | HistogramState = (
                        CounterState(d.name, d.help, labels.names, guard) if isinstance(d, f.CounterFamily)
                        else HistogramState(d.name, d.help, labels.names, guard, d.slots))
                    self._drained.append(_Drained(spec.name, d, labels, state))
                elif isinstance(d, (f.IndexedCounter, f.StatCounter)):
                    self._read.append((spec.name, d))
        problem = duplicate_families(self._specs, kinds)
        if problem:
            raise ValueError(problem)

    def state(self, name: str) -> Any:
        """The cumulative state (CounterState or HistogramState) of the drained family `name`."""
        for d in self._drained:
            if d.decl.name == name:
                return d.state
        raise KeyError(f"no drained family {name!r} declared by {', '.join(s.name for s in self._specs)}")

    def forget(self, released: Mapping[str, Iterable[LabelValues]]) -> None:
        """Drop the cumulative series the guard released (their pods are gone)."""
        with self._lock:
            for d in self._drained:
                if d.state.name in released:
                    d.state.forget(released[d.state.name])

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # scrapes may overlap; draining must not
            self._owners_now = {}
            out: list[Metric] = []
            for d in self._drained:
                p = self._loaded(d.probe)
                if p is None:
                    continue
                try:
                    out.append(self._drain(p, d))
                except Exception as exc:  # one family's failure must not empty the page
                    self.errors.read_failed(d.probe, d.decl.name, exc)
            out += self._read_families()
            if self._known is not None:  # after the probes' families: this scrape's errors are counted
                yield from self._agent_families()
                yield from self.errors.families()
            yield from out

    def _loaded(self, name: str) -> LoadedProbe | None:
        p = self._probes.get(name)
        return p if p is not None and p.bpf is not None else None

    def _owners(self, name: str) -> Mapping[int, int]:
        """Port -> owning cgroup from the `PortOwners` map `name` declares, read once per scrape;
        empty when its probe is not loaded."""
        if name not in self._owners_now:
            probe, decl = self._port_owners.get(name, ("", None))
            p = self._loaded(probe) if decl is not None else None
            owners: dict[int, int] = {}
            if p is not None and decl is not None:
                try:
                    owners = {f.key_int(k): c for k, v in p.bpf[decl.table].items() if (c := decl.owner(v))}
                except KeyError:
                    pass
            self._owners_now[name] = owners
        return self._owners_now[name]

    def _drain(self, p: LoadedProbe, d: _Drained) -> Metric:
        table = p.bpf[d.decl.table]
        if isinstance(d.state, CounterState):
            entries = drain(table)
            for tap in self.taps:
                for k, n in entries:
                    tap(d.decl.table, k, n)
            d.state.add_all(summed(self._labelled(d, entries)))
            return d.state.family()
        for labels, v in self._labelled(d, drain_entries(table)):
            d.state.add(labels, v.slots, v.sum_ns)
        if isinstance(d.decl, f.HistogramFamily) and d.decl.exemplars and self._exemplars is not None:
            # After the drain: a kept span's connection was counted in the kernel before its record
            # was read, so its label set is held by now.
            for key, slot, exemplar in self._exemplars.take(d.decl.name, d.state.slot_count):
                try:
                    labels = d.labels(key)
                except Exception:  # its drained twin went to the overflow series, which takes no exemplar
                    continue
                d.state.attach_exemplar(labels, slot, exemplar)
        return d.state.family()

    def _labelled(self, d: _Drained, entries: Iterable[tuple[Any, Any]]) -> list[tuple[LabelValues, Any]]:
        """(labels, value) of drained (key, value) entries; a key whose labels cannot be decoded
        is counted under the overflow series' labels (see the module docstring)."""
        out: list[tuple[LabelValues, Any]] = []
        failed, first = 0, None
        for k, v in entries:
            try:
                labels = d.labels(k)
            except Exception as exc:
                failed, first = failed + 1, first or exc
                labels = (OVERFLOW,) * len(d.labels.names)
            out.append((labels, v))
        if first is not None:
            self.errors.undecoded(d.probe, d.decl.name, failed, first)
        return out

    def _read_families(self) -> Iterable[Metric]:
        """Per-CPU arrays and stats slots, summed over CPUs; families of one name from several
        probes (probe_label) are merged into one."""
        merged: dict[str, CounterMetricFamily] = {}
        out: list[CounterMetricFamily] = []
        for probe, d in self._read:
            if isinstance(d, f.IndexedCounter) and d.probe_label and d.name in merged:
                fam = merged[d.name]
            else:
                labels = ([] if isinstance(d, f.StatCounter) else (["probe"] if d.probe_label else []) + [d.label])
                fam = CounterMetricFamily(d.name, d.help, labels=labels)
                out.append(fam)
                if isinstance(d, f.IndexedCounter) and d.probe_label:
                    merged[d.name] = fam
            p = self._loaded(probe)
            if p is None:
                continue
            samples: list[tuple[list[str], float]]
            try:
                if isinstance(d, f.StatCounter):
                    samples = [([], float(p.stat(d.index)))]
                else:
                    table = p.bpf[d.table]
                    samples = [(([probe] if d.probe_label else []) + [value], float(per_cpu_sum(table, idx)))
                               for idx, value in d.values.items()]
            except Exception as exc:  # this probe's part of the family is left out; the rest is served
                self.errors.read_failed(probe, d.name, exc)
                continue
            for labels, value in samples:
                fam.add_metric(labels, value)
        for fam in out:
            if fam.samples or fam.name in merged:
                yield fam

    def _agent_families(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("bcgov_agent_probe_up", "1 when the probe is loaded and attached.", labels=["probe"])
        events = CounterMetricFamily("bcgov_agent_events", "Records received from the kernel by the agent.", labels=["probe"])
        lost = CounterMetricFamily(
            "bcgov_agent_events_lost", "Records the kernel could not hand over (ring buffer full), counted in the kernel.", labels=["probe"]
        )
        full = CounterMetricFamily("bcgov_agent_map_full", "Inserts refused by a full BPF map.", labels=["probe"])
        for name in self._known or ():
            p = self._loaded(name)
            up.add_metric([name], 1.0 if p is not None else 0.0)
            if p is None:
                continue
            if p.plan.spec.ring_buffer:
                events.add_metric([name], float(self._received(name)))
            try:
                counts = [(lost, p.stat(f.STAT_LOST))] if p.plan.spec.ring_buffer else []
                counts.append((full, p.stat(f.STAT_MAP_FULL)))
            except Exception as exc:  # no readable `stats` array: this probe's counts are left out
                self.errors.read_failed(name, "stats", exc)
                continue
            for fam, n in counts:
                fam.add_metric([name], float(n))
        yield from (up, events, lost, full)


def duplicate_families(specs: Iterable[ProbeSpec],
                       kinds: tuple[type, ...] = (f.CounterFamily, f.HistogramFamily, f.IndexedCounter, f.StatCounter)) -> str:
    """Why `specs` cannot be exported together, or "": two probes (or one, twice) declaring a
    family of one name would make the exposition invalid. Only IndexedCounter(probe_label=True)
    families merge across probes."""
    seen: dict[str, str] = {}
    for spec in specs:
        for d in spec.metrics:
            if not isinstance(d, kinds) or isinstance(d, f.PortOwners) or (isinstance(d, f.IndexedCounter) and d.probe_label):
                continue
            if d.name in seen:
                return (f"metric family {d.name} declared twice ({seen[d.name]} and {spec.name}): "
                        "give one of them another name, or share it with IndexedCounter(probe_label=True)")
            seen[d.name] = spec.name
    return ""

