"""A family's declared label decoders (probes/families.py) bound to the agent's enricher: label
names, and one function turning a map key into label values.

The same `KeyLabels` labels a drained map key and a key the pipeline remembered for an exemplar
(agent/metrics/exemplars.py), so the two always agree. Decoders whose names depend on identity
(workload, endpoint, peer) take them from the `Enricher`; a block device from the
`BlockDeviceResolver`; the listening-port owners from `owners(name)`, read once per scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.identity.block_devices import BlockDeviceResolver
from agent.identity.enricher import Enricher
from agent.metrics.series_guard import LabelValues
from probes import families as f

Owners = Callable[[str], Mapping[int, int]]
_Part = Callable[[Any], tuple[str, ...]]


class KeyLabels:
    """Label names of one family and the function from its map key to their values."""

    def __init__(self, decls: Sequence[f.Label], enricher: Enricher, devices: BlockDeviceResolver,
                 owners: Owners) -> None:
        names: list[str] = []
        parts: list[_Part] = []
        for d in decls:
            n, part = _bind(d, enricher, devices, owners)
            names += n
            parts.append(part)
        self.names: tuple[str, ...] = tuple(names)
        self._parts = tuple(parts)

    def __call__(self, key: Any) -> LabelValues:
        out: tuple[str, ...] = ()
        for part in self._parts:
            out += part(key)
        return out


def _bind(d: f.Label, e: Enricher, devices: BlockDeviceResolver, owners: Owners) -> tuple[tuple[str, ...], _Part]:
    if isinstance(d, (f.EnumLabel, f.ComputedLabel)):
        return (d.name,), lambda k: (d.decode(k),)
    if isinstance(d, f.WorkloadLabels):
        return tuple(e.label_names), _workload(d, e)
    if isinstance(d, f.LocalEndpoint):
        def local(k: Any) -> tuple[str, ...]:
            addr, port = d.address(k)
            owner = owners(d.owners).get(port, 0) if d.owners else 0
            return e.endpoint_labels(addr, port, owner)
        return tuple(e.label_names), local
    if isinstance(d, f.PeerEndpoint):
        return tuple(e.peer_label_names), lambda k: e.peer_labels(*d.address(k))
    if isinstance(d, f.BlockDevice):
        unknown = set(d.labels) - set(f.BLOCK_DEVICE_LABELS)
        if unknown:
            raise ValueError(f"block device labels {sorted(unknown)} unknown; known: {', '.join(f.BLOCK_DEVICE_LABELS)}")

        def device(k: Any) -> tuple[str, ...]:
            dev = devices.describe(*d.split(f.key_field(k, d.field)))
            return tuple(getattr(dev, name) for name in d.labels)
        return d.labels, device
    raise TypeError(f"unknown label decoder {d!r}")


def _workload(d: f.WorkloadLabels, e: Enricher) -> _Part:
    if d.port:
        return lambda k: e.workload_labels(f.key_field(k, d.cgroup), getattr(k, d.port) or None, per_pod=d.per_pod)
    if d.per_pod:
        return lambda k: e.workload_labels(f.key_field(k, d.cgroup), per_pod=True)
    return lambda k: e.workload_labels(f.key_field(k, d.cgroup))
