"""Pod uid / pod IP -> pod metadata, from a list+watch of this node's pods (informer style).

The watcher thread lists ``/api/v1/pods?fieldSelector=spec.nodeName=<node>``, then watches from the
list's resourceVersion. A watch that ends cleanly (server timeout) resumes from the last
resourceVersion; a 410 Gone, an error event or a dropped connection means events may have been
missed, so it relists. Deleted pods stay resolvable for ``grace_period`` seconds, because their last
events and metric scrapes arrive after the DELETED event; ``expire()`` then removes them and
``pop_expired()`` tells the agent which pods' series to drop.

Without any Kubernetes configuration the cache logs that once and stays empty.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

from agent.identity import kube
from agent.identity.errors import KubernetesConfigError
from agent.identity.owners import OwnerResolver

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class PodInfo:
    """What the agent needs to know about one pod on this node. Mappings are read-only."""

    uid: str
    namespace: str
    name: str
    node: str
    ips: tuple[str, ...]
    labels: Mapping[str, str]
    workload_kind: str
    workload_name: str
    containers: Mapping[str, str]  # container id (no "containerd://") -> container name
    phase: str
    host_network: bool = False
    deleted_at: float | None = None
    ports: tuple[int, ...] = ()  # declared TCP container ports, in spec order (a tier hint)
    #: A mirror pod's static pod uid (annotation ``kubernetes.io/config.mirror``): the kubelet's
    #: config hash, 32 hex digits, which is what the static pod's cgroup path carries.
    static_uid: str | None = None


MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def pod_info_from_api(pod: Any, owners: OwnerResolver) -> PodInfo:
    """Convert a ``kubernetes.client.V1Pod`` into a PodInfo, resolving its workload."""
    meta, spec, status = pod.metadata, pod.spec, pod.status
    labels = dict(meta.labels or {})
    kind, name = owners.resolve(meta.namespace, meta.name, labels, meta.owner_references)
    ips: list[str] = []
    containers: dict[str, str] = {}
    if status is not None:
        ips = [p.ip for p in (status.pod_ips or []) if p.ip] or ([status.pod_ip] if status.pod_ip else [])
        for group in (status.container_statuses, status.init_container_statuses,
                      status.ephemeral_container_statuses):
            for cs in group or ():
                if cs.container_id:
                    containers[cs.container_id.partition("://")[2] or cs.container_id] = cs.name
    return PodInfo(
        uid=meta.uid,
        namespace=meta.namespace,
        name=meta.name,
        node=(spec.node_name if spec else None) or "",
        ips=tuple(ips),
        labels=types.MappingProxyType(labels),
        workload_kind=kind,
        workload_name=name,
        containers=types.MappingProxyType(containers),
        phase=(status.phase if status else None) or "Unknown",
        host_network=bool(spec and spec.host_network),
        ports=declared_tcp_ports(spec),
        static_uid=(meta.annotations or {}).get(MIRROR_ANNOTATION) or None,
    )


def declared_tcp_ports(spec: Any) -> tuple[int, ...]:
    """The TCP ``containerPort``s of a ``V1PodSpec``'s containers, in order, without repeats."""
    ports: dict[int, None] = {}
    for c in (spec.containers if spec else None) or ():
        for p in c.ports or ():
            if (p.protocol or "TCP") == "TCP" and p.container_port:
                ports[int(p.container_port)] = None
    return tuple(ports)


class PodCache:
    """This node's pods by uid and by IP, kept current by a background list+watch thread.

    Nothing happens until ``start()``. ``clock`` drives the deletion grace period (inject one in
    tests). ``max_pods`` bounds memory: past it, the oldest deleted pods are expired early. The
    watcher expires pods whenever an event arrives; on a quiet node the agent should also call
    ``expire()`` periodically (each scrape is a good moment) and then ``pop_expired()``.
    """

    def __init__(
        self,
        node_name: str,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        grace_period: float = 300.0,
        max_pods: int = 2048,
        clock: Callable[[], float] = time.monotonic,
        watch_timeout: int = 300,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.node_name = node_name
        self._kubeconfig = kubeconfig
        self._context = context
        self._grace = grace_period
        self._max_pods = max_pods
        self._clock = clock
        self._watch_timeout = watch_timeout
        self._backoff = backoff
        self._lock = threading.Lock()
        self._by_uid: dict[str, PodInfo] = {}
        self._by_ip: dict[str, str] = {}
        self._by_static_uid: dict[str, str] = {}  # static pod uid -> its mirror pod's uid
        self._expired: collections.deque[PodInfo] = collections.deque(maxlen=max_pods)
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: kube.PodWatcher | None = None
        self.available = False
        self.stats: collections.Counter[str] = collections.Counter()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> bool:
        """Load the client config and start the watcher thread. Returns False (and logs once) when
        there is no Kubernetes configuration; the cache then stays empty."""
        try:
            api_client = kube.load_api_client(self._kubeconfig, self._context)
        except KubernetesConfigError as e:
            log.warning("no Kubernetes config; running with cgroup identity only (%s)", e)
            return False
        self._watcher = kube.PodWatcher(
            api_client, self.node_name, self._watch_timeout, OwnerResolver(*kube.owner_apis(api_client))
        )
        self.available = True
        self._thread = threading.Thread(target=self._run, name="bcgov-pod-watch", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the watcher thread, interrupting a blocked watch read."""
        self._stopping.set()
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        # Interrupt repeatedly: a watch request may be in flight (not yet interruptible) at first.
        while self._thread.is_alive() and time.monotonic() < deadline:
            if self._watcher is not None:
                self._watcher.interrupt()
            self._thread.join(0.05)

    def wait_synced(self, timeout: float) -> bool:
        """Block until the first list has been applied (True) or the timeout passes (False)."""
        return self._synced.wait(timeout)

    # -- lookups ---------------------------------------------------------------------------------

    def by_uid(self, uid: str) -> PodInfo | None:
        """The pod with this uid (dashes, as in metadata.uid), deleted ones during their grace; a
        static pod's uid (its cgroup's, 32 hex) finds its mirror pod through the mirror's
        ``kubernetes.io/config.mirror`` annotation."""
        with self._lock:
            pod = self._by_uid.get(uid)
            if pod is None and (mirror := self._by_static_uid.get(uid)) is not None:
                pod = self._by_uid.get(mirror)
            return pod

    def by_ip(self, ip: str) -> PodInfo | None:
        """The pod that has (or, within the grace period, had) this IP; host-network pods never."""
        with self._lock:
            uid = self._by_ip.get(ip)
            return self._by_uid.get(uid) if uid else None

    def pods(self) -> list[PodInfo]:
        """A snapshot of all cached pods, deleted ones included."""
        with self._lock:
            return list(self._by_uid.values())

    def expire(self) -> list[PodInfo]:
        """Drop deleted pods older than the grace period; return them (also kept for pop_expired)."""
        now = self._clock()
        with self._lock:
            gone = [p for p in self._by_uid.values()
                    if p.deleted_at is not None and now - p.deleted_at >= self._grace]
            for p in gone:
                self._remove_locked(p)
        return gone

    def pop_expired(self) -> list[PodInfo]:
        """Pods expired since the last call: the agent removes their metric series."""
        with self._lock:
            out = list(self._expired)
            self._expired.clear()
        return out

    # -- updates (watcher thread) ----------------------------------------------------------------

    def replace(self, pods: list[PodInfo]) -> None:
        """Apply a full list: upsert these, mark cached live pods missing from it as deleted."""
        now = self._clock()
        seen = {p.uid for p in pods}
        with self._lock:
            for old in list(self._by_uid.values()):
                if old.uid not in seen and old.deleted_at is None:
                    self._by_uid[old.uid] = dataclasses.replace(old, deleted_at=now)
            for p in pods:
                self._upsert_locked(p)
        self._synced.set()

    def apply(self, event_type: str, pod: PodInfo) -> None:
        """Apply one watch event (ADDED, MODIFIED, DELETED)."""
        with self._lock:
            if event_type == "DELETED":
                self._by_uid[pod.uid] = dataclasses.replace(pod, deleted_at=self._clock())
                for ip in pod.ips:
                    self._by_ip.setdefault(ip, pod.uid)
            else:
                self._upsert_locked(pod)

    def _upsert_locked(self, pod: PodInfo) -> None:
        old = self._by_uid.get(pod.uid)
        if old is not None:
            for ip in set(old.ips) - set(pod.ips):
                if self._by_ip.get(ip) == pod.uid:
                    del self._by_ip[ip]
        if old is None and len(self._by_uid) >= self._max_pods and not self._evict_one_locked():
            return
        self._by_uid[pod.uid] = pod
        if pod.static_uid:
            self._by_static_uid[pod.static_uid] = pod.uid
        if not pod.host_network:  # host-network pods share the node's IP: it names no pod
            for ip in pod.ips:
                self._by_ip[ip] = pod.uid  # a live pod takes over an IP from a deleted one

    def _evict_one_locked(self) -> bool:
        deleted = [p for p in self._by_uid.values() if p.deleted_at is not None]
        if not deleted:
            self.stats["dropped_over_capacity"] += 1  # more live pods than max_pods: refuse, count
            return False
        self._remove_locked(min(deleted, key=lambda p: p.deleted_at or 0.0))
        self.stats["evicted_early"] += 1
        return True

    def _remove_locked(self, pod: PodInfo) -> None:
        self._by_uid.pop(pod.uid, None)
        if pod.static_uid and self._by_static_uid.get(pod.static_uid) == pod.uid:
            del self._by_static_uid[pod.static_uid]
        for ip in pod.ips:
            if self._by_ip.get(ip) == pod.uid:
                del self._by_ip[ip]
        self._expired.append(pod)

    def _run(self) -> None:
        assert self._watcher is not None
        kube.run_informer(self._watcher, self, self._stopping, self._backoff, self.stats)
