"""The metric families a probe declares: which BPF map feeds which Prometheus family, and how each
label is decoded from the map's key (as cloudflare/ebpf_exporter's per-program `metrics:` config).

Declarations are data: `ProbeSpec.metrics` lists them, agent/metrics/collectors.py reads every
loaded probe's list at scrape time and builds the families from it. Nothing here imports the agent.

Families (a name is Prometheus' family name, `_total` added by the exposition for counters):

- `CounterFamily`: a hash of u64 counts, drained (lookup-and-delete) into cumulative counters;
- `HistogramFamily`: a hash of `struct bcgov_hist` (probes/bcgov_hist.h), drained likewise;
- `IndexedCounter`: a per-CPU array read (not drained) by index, one series per index;
- `StatCounter`: one slot of the probe's `stats` array (bcgov_common.h), no labels.

Label decoders turn one map key into label values, in the order declared: `EnumLabel` (a code
field), `WorkloadLabels` (a cgroup id, expanded to the enricher's label names), `LocalEndpoint` and
`PeerEndpoint` (addresses, expanded to the enricher's workload or peer label names), `BlockDevice`
(a dev_t, expanded to device/mount/PVC names) and `ComputedLabel` (any function of the key).
`PortOwners` is not a family: it names a map other probes' `LocalEndpoint` labels look up.

Every decoder says which key fields it reads (`fields`; `KEY` for a scalar key), so the loader can
check them against the compiled map's key type when the probe loads (agent/kernel/declared_maps.py)
without knowing how a label is decoded. A decoder given a function (`address`, `value`) names the
fields that function reads in `fields` where it can; the loader also calls the function once on a
zeroed key, so one that names no fields is checked all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from probes.latency_hist import HIST_SLOTS

#: Slots of the per-CPU `stats` array every probe declares (enum bcgov_stat in bcgov_common.h;
#: tests/probes/test_shared_keys.py reads both).
STAT_EMITTED, STAT_LOST, STAT_MAP_FULL, STAT_UNTRACKED = 0, 1, 2, 3
STAT_MAX = 4

#: `WorkloadLabels(cgroup=KEY)`: the map's key is the cgroup id itself (a scalar u64 key).
KEY = ""

Address = Callable[[Any], tuple[str, int]]


def key_int(value: Any) -> int:
    """A scalar key or value as an int: BCC gives ctypes from items() and ints from batch reads."""
    return int(getattr(value, "value", value))


def key_field(key: Any, name: str) -> Any:
    """Field `name` of a map key; `KEY` is the (scalar) key itself."""
    return key_int(key) if name == KEY else getattr(key, name)


# ---- label decoders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnumLabel:
    """Label `name` from the code in key field `field`; a code not in `values` is `default`."""

    name: str
    field: str
    values: Mapping[int, str]
    default: str = "unknown"

    def decode(self, key: Any) -> str:
        return self.values.get(key_field(key, self.field), self.default)

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)


@dataclass(frozen=True)
class WorkloadLabels:
    """The workload of the cgroup in key field `cgroup` (the enricher's label names). `port`: a
    field holding the local listening port of a server's end (0: none), which names its tier;
    `per_pod`: name the pod for every workload kind (rare events)."""

    cgroup: str = "cgroup_id"
    port: str = ""
    per_pod: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.cgroup, self.port) if self.port else (self.cgroup,)


@dataclass(frozen=True)
class LocalEndpoint:
    """This node's end of a connection known by address (the enricher's workload label names).
    `address(key)` -> (ip, port); `owners`: the `PortOwners` lookup naming the cgroup listening on
    that port, so a server's end is labelled as its process. `fields`: the key fields `address`
    reads (optional, see the module docstring)."""

    address: Address
    owners: str = ""
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class PeerEndpoint:
    """The remote end of a connection (the enricher's peer label names); `address(key)` -> (ip, port).
    `fields`: the key fields `address` reads (optional, see the module docstring)."""

    address: Address
    fields: tuple[str, ...] = ()


#: Labels a `BlockDevice` can name, as the resolver describes a device.
BLOCK_DEVICE_LABELS = ("device", "mount", "pvc", "pvc_namespace")


@dataclass(frozen=True)
class BlockDevice:
    """Block device labels (`labels`, some of BLOCK_DEVICE_LABELS) of the dev_t in key field
    `field`; `split(dev)` -> (major, minor)."""

    field: str
    labels: tuple[str, ...]
    split: Callable[[int], tuple[int, int]]

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)


@dataclass(frozen=True)
class ComputedLabel:
    """Label `name` as `value(key)`; for codes that need more than a table (an exit status).
    `fields`: the key fields `value` reads (optional, see the module docstring)."""

    name: str
    value: Callable[[Any], str]
    fields: tuple[str, ...] = ()

    def decode(self, key: Any) -> str:
        return self.value(key)


Label = EnumLabel | WorkloadLabels | LocalEndpoint | PeerEndpoint | BlockDevice | ComputedLabel


# ---- families ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterFamily:
    """A BPF hash `table` of u64 counts keyed by a struct (or a scalar), drained at every scrape."""

    name: str
    help: str
    table: str
    labels: tuple[Label, ...] = ()


@dataclass(frozen=True)
class HistogramFamily:
    """A BPF hash `table` of `struct bcgov_hist` values with `slots` log2 slots, drained at every
    scrape. `exemplars`: buckets carry the latest kept span's ids (the agent's exemplar store holds
    keys of this map's key type)."""

    name: str
    help: str
    table: str
    labels: tuple[Label, ...] = ()
    slots: int = HIST_SLOTS
    exemplars: bool = False


@dataclass(frozen=True)
class IndexedCounter:
    """A per-CPU u64 array `table` read by index: one series per index with `label` = `values[i]`.
    `probe_label`: a family several probes feed, told apart by a leading `probe` label."""

    name: str
    help: str
    table: str
    label: str
    values: Mapping[int, str] = field(default_factory=dict)
    probe_label: bool = False


@dataclass(frozen=True)
class StatCounter:
    """Slot `index` of the probe's `stats` array (STAT_*), one series without labels."""

    name: str
    help: str
    index: int


@dataclass(frozen=True)
class PortOwners:
    """A hash `table` of local port -> its owner, read (not drained) at scrape; `owner(value)` is
    the cgroup id listening on the port, 0 when several do. `LocalEndpoint(owners=name)` uses it."""

    name: str
    table: str
    owner: Callable[[Any], int]


Family = CounterFamily | HistogramFamily | IndexedCounter | StatCounter
Declaration = Family | PortOwners
#: Families whose map entries are deleted as they are read (tests/probes/test_map_policy.py).
DRAINED = (CounterFamily, HistogramFamily)
