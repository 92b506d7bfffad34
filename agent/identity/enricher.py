"""Enrichment: the one place that turns kernel identity (cgroup id, endpoints) into who it is.

Every metric label set and span/log attribute set about a workload is built here, so identity
(pod, workload, tier) slots in by replacing this class without touching probes or exporters.
The base `Enricher` knows only what the kernel says: no identity labels, the cgroup id as an
attribute.
"""

from __future__ import annotations

from typing import Any


class Enricher:
    """Identity for events and metrics; subclasses add pod, workload and tier."""

    #: Names of the identity labels appended to every workload-scoped metric, in order.
    label_names: tuple[str, ...] = ()
    #: Identity labels for the remote end of a connection, for metrics keyed by 4-tuple.
    peer_label_names: tuple[str, ...] = ()

    def labels_for_cgroup(self, cgroup_id: int) -> tuple[str, ...]:
        """Label values (matching `label_names`) for a workload known by its cgroup."""
        return ()

    def labels_for_endpoint(self, addr: str, port: int) -> tuple[str, ...]:
        """Label values (matching `label_names`) for a local endpoint known only by address."""
        return ()

    def peer_labels(self, addr: str, port: int) -> tuple[str, ...]:
        """Label values (matching `peer_label_names`) for a remote endpoint."""
        return ()

    # The three calls every metric family, span and log line is labelled through. Subclasses that
    # know more than the cgroup (identity_enricher.py) override these; the defaults keep enrichers
    # that only implement the per-cgroup calls below working.

    def workload_labels(self, cgroup_id: int, port: int | None = None, *, per_pod: bool = False) -> tuple[str, ...]:
        """Label values (matching `label_names`) of the workload in `cgroup_id`. `port`: the local
        port of its end of a connection when that port names its tier (a server's listening port,
        None for a client's ephemeral one). `per_pod`: show the pod even for workloads whose pods
        come and go (rare events such as OOM kills)."""
        return self.labels_for_cgroup(cgroup_id)

    def endpoint_labels(self, addr: str, port: int, owner_cgroup: int = 0) -> tuple[str, ...]:
        """Label values (matching `label_names`) of this node's end of a connection known by
        address; `owner_cgroup` is the cgroup listening on `port` when the kernel knows one."""
        return self.labels_for_endpoint(addr, port)

    def workload_attributes(self, cgroup_id: int, pid: int, port: int | None = None) -> dict[str, Any]:
        """Span and log attributes of a process; `port` as in `workload_labels`."""
        return self.attributes_for(cgroup_id, pid)

    def attributes_for(self, cgroup_id: int, pid: int) -> dict[str, Any]:
        """Span and log attributes (OTel semantic conventions) for a process."""
        attrs: dict[str, Any] = {}
        if cgroup_id:
            attrs["bcgov.cgroup.id"] = cgroup_id
        return attrs

    def peer_attributes(self, addr: str, port: int) -> dict[str, Any]:
        """Attributes for the remote end of a connection."""
        return {}

    def stop(self) -> None:
        """Release what the enricher holds (a pod watch in subclasses); the base holds nothing."""
