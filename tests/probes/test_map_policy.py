"""Maps cannot leak: every keyed map a probe writes is LRU, drained by the agent at scrape, or has a
path in the C that removes its entries. A new BPF_HASH fails here until its policy is written down
(and checked): a leaking non-LRU hash fills one day and then refuses every later insert. "Drained"
is what the probe's spec declares: a CounterFamily or HistogramFamily over the map, which the agent
reads with lookup-and-delete (agent/metrics/collectors.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from probes import registry
from probes.families import DRAINED as DRAINED_KINDS

ROOT = Path(__file__).resolve().parents[2]
PROBES = ROOT / "probes"

# (probe, map) -> the entry-removing C call that must exist, for a hash no family drains
POLICY: dict[tuple[str, str], str] = {
    ("tcp_lifecycle", "conns"): "conns.delete(",  # at close; a skipped close by the raw repair
    ("tcp_lifecycle", "listeners"): "listeners.delete(",  # with the port's last listening socket
    ("process", "pending_exec"): "pending_exec.delete(",  # exec, failed execve's return, thread exit
}
# What the shipped probes drain (their specs say so): a declaration removed by mistake would leave
# its map filling up, so the set is pinned here too.
SHIPPED_DRAINED = {
    ("tcp_lifecycle", "tcp_connections"), ("tcp_lifecycle", "tcp_connections_before_agent"),
    ("tcp_lifecycle", "tcp_connection_durations"), ("tcp_lifecycle", "tcp_skipped_closes"),
    ("tcp_retransmit", "tcp_retransmits"), ("tcp_reset", "tcp_resets"), ("process", "process_execs"),
    ("process", "process_exits"), ("oom", "oom_kills"), ("block_io", "block_io_latency"),
    ("runqueue", "runqueue_latency"),
}


def _drained(probe: str) -> set[str]:
    """Maps the probe's spec declares a drained family over (none for a source not in the registry)."""
    if probe not in registry.names():
        return set()
    return {d.table for d in registry.get(probe).metrics if isinstance(d, DRAINED_KINDS)}


_HASH = re.compile(r"^\s*BPF_HASH\((\w+),", re.M)
_LRU = re.compile(r'^\s*BPF_TABLE\("lru_hash",[^,]+,[^,]+,\s*(\w+),', re.M)


def _maps() -> list[tuple[str, str, str]]:
    out = []
    for src in sorted(PROBES.glob("*.bpf.c")):
        text = src.read_text()
        probe = src.name.removesuffix(".bpf.c")
        out += [(probe, name, "hash") for name in _HASH.findall(text)]
        out += [(probe, name, "lru") for name in _LRU.findall(text)]
    return out


def test_the_sources_declare_maps() -> None:
    kinds = {k for _, _, k in _maps()}
    assert kinds == {"hash", "lru"}


@pytest.mark.parametrize("probe, name, kind", _maps(), ids=lambda v: str(v))
def test_every_keyed_map_is_lru_drained_or_emptied(probe: str, name: str, kind: str) -> None:
    if kind == "lru":
        return  # the kernel evicts the least recently used: a full map never refuses an insert
    if name in _drained(probe):
        return  # read with lookup-and-delete at every scrape (agent/metrics/collectors.py)
    policy = POLICY.get((probe, name))
    assert policy is not None, (f"{probe}.bpf.c: hash map {name} has no policy: make it LRU, declare a "
                                "CounterFamily/HistogramFamily over it in the spec, or delete its entries in the C "
                                "and name that call in POLICY here")
    assert policy in (PROBES / f"{probe}.bpf.c").read_text(), f"{probe}.bpf.c never calls {policy}"


def test_the_shipped_probes_still_drain_what_they_drained() -> None:
    assert {(p, n) for p in registry.names() for n in _drained(p)} >= SHIPPED_DRAINED


def test_maps_that_leaked_are_now_lru() -> None:
    # A skipped completion or last switch-out left these entries behind for good.
    lru = {(p, n) for p, n, k in _maps() if k == "lru"}
    assert {("block_io", "inflight"), ("runqueue", "tasks")} <= lru


def test_every_drained_family_reads_a_hash_its_probe_declares() -> None:
    hashes = {(p, n) for p, n, k in _maps() if k == "hash"}
    for spec in registry.ALL:
        for d in spec.metrics:
            if isinstance(d, DRAINED_KINDS):
                assert (spec.name, d.table) in hashes, f"{spec.name} declares {d.name} over {d.table}, not a BPF_HASH of it"
                assert (spec.name, d.table) not in POLICY, f"{d.table} is drained: its POLICY line is not needed"
