"""cgroup id (or peer IP) -> Identity: the one object every span, log line and metric is labelled from.

Combines the cgroup path cache, the path parser, the pod cache and the tier resolver. Anything it
cannot resolve is counted by reason through the ``unresolved`` callable the caller passes (a
registry-bound counter lives with the caller, never here).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any, Protocol

from agent.identity.containers import ContainerRef, parse_cgroup_path
from agent.identity.pods import PodInfo
from agent.identity.tiers import TierResolver

# OTel semantic-convention attribute per workload kind.
_KIND_ATTRIBUTE = {
    "Deployment": "k8s.deployment.name",
    "ReplicaSet": "k8s.replicaset.name",
    "StatefulSet": "k8s.statefulset.name",
    "DaemonSet": "k8s.daemonset.name",
    "Job": "k8s.job.name",
    "CronJob": "k8s.cronjob.name",
}
# Kinds whose pod names are stable, so a per-pod label cannot churn: everything else (Deployments,
# DaemonSets, Jobs, Spark executors, Airflow task pods) is labelled by its workload only.
STABLE_POD_KINDS = frozenset({"StatefulSet", "StaticPod", "Pod"})


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who an event belongs to. Unknown fields are None."""

    namespace: str | None = None
    pod: str | None = None
    pod_uid: str | None = None
    workload: str | None = None
    workload_kind: str | None = None
    container: str | None = None
    container_id: str | None = None
    runtime: str | None = None
    systemd_unit: str | None = None
    tier: str | None = None
    node: str | None = None

    def to_otel_attributes(self, prefix: str = "") -> dict[str, str]:
        """OTel semantic-convention attributes (unknown ones left out), keys prefixed by ``prefix``
        (e.g. ``"bcgov.peer."`` for the remote end)."""
        attrs = {
            "k8s.namespace.name": self.namespace,
            "k8s.pod.name": self.pod,
            "k8s.pod.uid": self.pod_uid,
            "container.id": self.container_id,
            "container.name": self.container,
            "k8s.node.name": self.node,
            "bcgov.tier": self.tier,
            "bcgov.workload.kind": self.workload_kind,
            "bcgov.workload.name": self.workload,
            "bcgov.systemd.unit": self.systemd_unit,
        }
        if self.workload_kind in _KIND_ATTRIBUTE and self.workload:
            attrs[_KIND_ATTRIBUTE[self.workload_kind]] = self.workload
        return {prefix + k: v for k, v in attrs.items() if v}

    def to_prom_labels(self, prefix: str = "", per_pod: bool = False) -> dict[str, str]:
        """``namespace, pod, workload, tier`` ("" when unknown), names prefixed (e.g. ``peer_``).

        ``pod`` is set only for kinds with stable pod names unless ``per_pod``: short-lived and
        rolling pods are carried by their workload, so they never mint series of their own.
        """
        show_pod = per_pod or self.workload_kind in STABLE_POD_KINDS
        return {
            prefix + "namespace": self.namespace or "",
            prefix + "pod": (self.pod or "") if show_pod else "",
            prefix + "workload": self.workload or "",
            prefix + "tier": self.tier or "",
        }


class CgroupPaths(Protocol):
    def path_for(self, cgroup_id: int) -> str | None: ...


class Pods(Protocol):
    available: bool

    def by_uid(self, uid: str) -> PodInfo | None: ...

    def by_ip(self, ip: str) -> PodInfo | None: ...


class UnresolvedCounts:
    """A thread-safe in-memory ``reason -> count``; callable, so it can be passed as ``unresolved``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def __call__(self, reason: str) -> None:
        with self._lock:
            self.counts[reason] += 1


def _as_callable(unresolved: Any) -> Callable[[str], None]:
    """Accept a callable or a labelled prometheus_client Counter (``.labels(reason=...).inc()``)."""
    if unresolved is None:
        return lambda reason: None
    if hasattr(unresolved, "labels"):
        # One child per reason, looked up once: Counter.labels() takes a lock and builds the
        # label tuple on every call, and a server end's peer (a client's ephemeral port) misses
        # the enrichment cache on every record (bench/README.md "per-record profile").
        children: dict[str, Any] = {}

        def count(reason: str) -> None:
            child = children.get(reason)
            if child is None:
                child = children[reason] = unresolved.labels(reason=reason)
            child.inc()

        return count
    return unresolved


class IdentityResolver:
    """Resolves cgroup ids and peer addresses to Identity values.

    ``pods`` may be None (no Kubernetes). ``unresolved`` is called with a reason: "cgroup_unknown",
    "no_kubernetes", "pod_unknown", "peer_unknown" or "endpoint_unknown".
    """

    def __init__(
        self,
        cgroups: CgroupPaths,
        pods: Pods | None,
        tiers: TierResolver,
        unresolved: Callable[[str], None] | Any = None,
        *,
        node: str | None = None,
        parse_cache_size: int = 4096,
    ) -> None:
        self._cgroups = cgroups
        self._pods = pods
        self._tiers = tiers
        self._count = _as_callable(unresolved)
        self._node = node or None
        # Paths repeat for every event of a container: memoise the regex work, bounded.
        self._parse = functools.lru_cache(maxsize=parse_cache_size)(parse_cgroup_path)

    def for_cgroup(self, cgroup_id: int, port: int | None = None) -> Identity:
        """Identity of the process in this cgroup; ``port`` (its local port) helps find the tier."""
        path = self._cgroups.path_for(cgroup_id)
        if path is None:
            self._count("cgroup_unknown")
            return Identity(node=self._node, tier=self._tiers.resolve(port=port))
        ref = self._parse(path)
        if ref.pod_uid is None:
            return self._non_pod(ref, port)
        if self._pods is None or not self._pods.available:
            self._count("no_kubernetes")
            return self._bare_pod(ref, port)
        pod = self._pods.by_uid(ref.pod_uid)
        if pod is None:
            self._count("pod_unknown")
            return self._bare_pod(ref, port)
        return self._from_pod(pod, ref, port)

    def for_endpoint(self, ip: str, port: int | None = None, owner_cgroup: int = 0) -> Identity:
        """Identity of this node's own end of a connection known by address (the 4-tuple counters:
        resets, retransmits), built like ``for_cgroup``'s so every family labels it alike: the pod
        with this IP; else the process in ``owner_cgroup`` (the port's listener, when the kernel
        knows a single one); else the node itself (workload "host", counted "endpoint_unknown").
        ``port`` is its local port, for the tier."""
        pod = self._pods.by_ip(ip) if self._pods is not None and self._pods.available else None
        if pod is not None:
            return self._from_pod(pod, None, port)
        if owner_cgroup:
            return self.for_cgroup(owner_cgroup, port)
        self._count("endpoint_unknown")
        return self._non_pod(ContainerRef(), port)

    def for_peer(self, ip: str, port: int | None = None, *, local: bool = False) -> Identity | None:
        """Identity of a connection's remote end: its pod when the IP is a known pod's, else just
        the port's tier; None when neither is known. ``local=True`` for this node's own end known
        only by address (4-tuple counters): an unknown one is counted as "endpoint_unknown"."""
        pod = self._pods.by_ip(ip) if self._pods is not None and self._pods.available else None
        if pod is not None:
            return self._from_pod(pod, None, port)
        tier = self._tiers.resolve(port=port)
        if tier is None:
            self._count("endpoint_unknown" if local else "peer_unknown")
            return None
        return Identity(tier=tier)

    def _from_pod(self, pod: PodInfo, ref: ContainerRef | None, port: int | None) -> Identity:
        cid = ref.container_id if ref else None
        return Identity(
            namespace=pod.namespace,
            pod=pod.name,
            pod_uid=pod.uid,
            workload=pod.workload_name,
            workload_kind=pod.workload_kind,
            container=pod.containers.get(cid) if cid else None,
            container_id=cid,
            runtime=ref.runtime if ref else None,
            tier=self._tiers.resolve(pod.labels, pod.namespace, port, pod.ports),
            node=pod.node or self._node,
        )

    def _bare_pod(self, ref: ContainerRef, port: int | None) -> Identity:
        return Identity(
            pod_uid=ref.pod_uid,
            container_id=ref.container_id,
            runtime=ref.runtime,
            tier=self._tiers.resolve(port=port),
            node=self._node,
        )

    def _non_pod(self, ref: ContainerRef, port: int | None) -> Identity:
        workload: str | None
        if ref.lxc_name is not None:
            workload, kind = f"lxc/{ref.lxc_name}", "LXC"
        elif ref.runtime == "systemd":
            workload, kind = ref.systemd_unit, "SystemdUnit"
        elif ref.container_id is not None and ref.systemd_unit is not None:
            # Podman Quadlet: the unit that runs the container is its stable name.
            workload, kind = ref.systemd_unit, "SystemdUnit"
        elif ref.container_id is not None:
            # Docker/Podman outside Kubernetes: no engine to name the container; the id is in
            # container.id, and the workload stays empty rather than minting a value per container.
            workload, kind = None, "Container"
        else:
            workload, kind = "host", "Host"
        return Identity(
            workload=workload,
            workload_kind=kind,
            container_id=ref.container_id,
            runtime=ref.runtime,
            systemd_unit=ref.systemd_unit,
            tier=self._tiers.resolve(port=port),
            node=self._node,
        )
