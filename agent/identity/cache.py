"""Identity for the connection hot path, looked up once per cgroup (and peer) and reused briefly.

Resolving identity (cgroup path -> pod -> workload -> tier) costs more than everything else a
connection record needs, yet a node's connections come from few cgroups and go to few peers. The
answers are reused for `ttl_s` (1 s): a pod the watch reports after its first connection shows
on that cgroup's records within a second, and a new cgroup is always resolved on its first record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from agent.identity.enricher import Enricher

# (metric label values, span/log attributes, those attributes as JSON members: '"k":v,...' or "")
Workload = tuple[tuple[str, ...], dict[str, Any], str]
Peer = tuple[dict[str, Any], str]  # (attributes, as JSON members)
_NO_PEER: Peer = ({}, "")


def _members(attrs: dict[str, Any]) -> str:
    # what the event log's json_object writes (tests/agent/test_pipeline_json.py holds them equal),
    # once per cgroup or peer: the standard encoder is fast enough off the per-record path
    return json.dumps(attrs, separators=(",", ":"), default=str)[1:-1]


class EnrichmentCache:
    """Bounded, short-lived memo of an `Enricher`'s per-cgroup and per-peer answers.

    Callers must not mutate the returned dicts (they are shared between records)."""

    def __init__(self, enricher: Enricher, ttl_s: float = 1.0, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._enricher = enricher
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._workloads: dict[tuple[int, int | None], tuple[float, Workload]] = {}
        self._peers: dict[tuple[str, int], tuple[float, Peer]] = {}

    def workload(self, cgroup_id: int, port: int | None = None) -> Workload:
        """Label values and attributes of the workload in `cgroup_id`; `port` is a server end's
        local port (its tier), None for a client end (see `Enricher.workload_labels`)."""
        now = self._clock()
        key = (cgroup_id, port)
        hit = self._workloads.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        e = self._enricher
        # attributes take a pid, but identity is the cgroup's: pid 0 keeps the key honest.
        attrs = e.workload_attributes(cgroup_id, 0, port)
        value = (e.workload_labels(cgroup_id, port), attrs, _members(attrs))
        if len(self._workloads) >= self._max:
            self._workloads.clear()  # a cgroup churn storm: start over rather than grow
        self._workloads[key] = (now + self._ttl, value)
        return value

    def peer(self, addr: str, port: int) -> Peer:
        """Attributes of a connection's remote end."""
        now = self._clock()
        key = (addr, port)
        hit = self._peers.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        attrs = self._enricher.peer_attributes(addr, port)
        # Most misses are a server end's peer, a client's ephemeral port with no identity: share one value.
        value = (attrs, _members(attrs)) if attrs else _NO_PEER
        if len(self._peers) >= self._max:
            self._peers.clear()
        self._peers[key] = (now + self._ttl, value)
        return value
