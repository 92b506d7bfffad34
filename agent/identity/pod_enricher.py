"""Enrichment with identity: cgroup id -> container -> pod -> workload -> tier, for every label
set and attribute set the agent produces (see agent/identity/enricher.py for the contract)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from agent.identity.cgroups import CgroupPathCache
from agent.identity.enricher import Enricher
from agent.identity.pods import PodCache
from agent.identity.resolver import Identity, IdentityResolver
from agent.identity.tiers import TierResolver

log = logging.getLogger("bcgov.agent.identity")

LABELS = ("namespace", "pod", "workload", "tier")
PEER_LABELS = ("peer_namespace", "peer_workload", "peer_tier")


class IdentityEnricher(Enricher):
    """Resolves identity through an `IdentityResolver`; owns the pod watch when it made one."""

    label_names = LABELS
    peer_label_names = PEER_LABELS

    def __init__(self, resolver: IdentityResolver, pods: PodCache | None = None) -> None:
        self._resolver = resolver
        self._pods = pods

    @classmethod
    def for_node(
        cls,
        registry: CollectorRegistry,
        node_name: str | None = None,
        kubeconfig: str | None = None,
        tiers: Mapping[str, Any] | None = None,
    ) -> IdentityEnricher:
        """Build from this node: cgroup2 tree, the pod watch when Kubernetes is reachable."""
        node = node_name or os.environ.get("NODE_NAME") or socket.gethostname()
        unresolved = Counter(
            "bcgov_agent_identity_unresolved", "Identity lookups that could not be resolved, by reason.", ["reason"], registry=registry
        )
        watch = PodCache(node, kubeconfig=kubeconfig)
        pods = watch if watch.start() else None  # else PodCache said once why: cgroup identity only
        resolver = IdentityResolver(CgroupPathCache(), pods, TierResolver(tiers), unresolved, node=node)
        return cls(resolver, pods)

    def wait_synced(self, timeout: float) -> bool:
        """Block until the pod watch has applied its first list (True); False on timeout or when
        there is no pod watch (no Kubernetes config)."""
        return self._pods is not None and self._pods.wait_synced(timeout)

    @property
    def pods(self) -> PodCache | None:
        """The pod watch's cache (None without Kubernetes): the agent expires pod series with it."""
        return self._pods

    def stop(self) -> None:
        """Stop the pod watch."""
        if self._pods is not None:
            self._pods.stop()

    def _who(self, cgroup_id: int, port: int | None = None) -> Identity:
        return self._resolver.for_cgroup(cgroup_id, port)

    @staticmethod
    def _labels(who: Identity, per_pod: bool = False) -> tuple[str, ...]:
        """The one place an Identity becomes label values, for every family: workload, tier and
        pod cannot disagree between families that see the same process."""
        labels = who.to_prom_labels(per_pod=per_pod)
        return tuple(labels[n] for n in LABELS)

    def workload_labels(self, cgroup_id: int, port: int | None = None, *, per_pod: bool = False) -> tuple[str, ...]:
        return self._labels(self._who(cgroup_id, port), per_pod)

    def endpoint_labels(self, addr: str, port: int, owner_cgroup: int = 0) -> tuple[str, ...]:
        return self._labels(self._resolver.for_endpoint(addr, port, owner_cgroup))

    def workload_attributes(self, cgroup_id: int, pid: int, port: int | None = None) -> dict[str, Any]:
        attrs = Enricher.attributes_for(self, cgroup_id, pid)
        attrs.update(self._who(cgroup_id, port).to_otel_attributes())
        return attrs

    def labels_for_cgroup(self, cgroup_id: int) -> tuple[str, ...]:
        return self.workload_labels(cgroup_id)

    def labels_for_endpoint(self, addr: str, port: int) -> tuple[str, ...]:
        return self.endpoint_labels(addr, port)

    def peer_labels(self, addr: str, port: int) -> tuple[str, ...]:
        who = self._resolver.for_peer(addr, port)
        if who is None:
            return ("",) * len(PEER_LABELS)
        labels = who.to_prom_labels(prefix="peer_")
        return tuple(labels[n] for n in PEER_LABELS)

    def attributes_for(self, cgroup_id: int, pid: int) -> dict[str, Any]:
        return self.workload_attributes(cgroup_id, pid)

    def peer_attributes(self, addr: str, port: int) -> dict[str, Any]:
        who = self._resolver.for_peer(addr, port)
        if who is None:
            return {}
        # bcgov.peer.k8s.pod.name, bcgov.peer.tier: one namespace for everything about the peer
        return {"bcgov.peer." + k.removeprefix("bcgov."): v for k, v in who.to_otel_attributes().items()}
