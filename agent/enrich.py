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

    def attributes_for(self, cgroup_id: int, pid: int) -> dict[str, Any]:
        """Span and log attributes (OTel semantic conventions) for a process."""
        attrs: dict[str, Any] = {}
        if cgroup_id:
            attrs["bcgov.cgroup.id"] = cgroup_id
        return attrs

    def peer_attributes(self, addr: str, port: int) -> dict[str, Any]:
        """Attributes for the remote end of a connection."""
        return {}
