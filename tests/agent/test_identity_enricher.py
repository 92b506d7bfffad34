"""Identity labels and attributes on agent output, through the real resolver and parser."""

from __future__ import annotations

from agent.identity.pod_enricher import LABELS, PEER_LABELS, IdentityEnricher
from agent.identity.resolver import IdentityResolver, UnresolvedCounts
from agent.identity.tiers import TierResolver
from agent.metrics.collectors import ProbeMetrics
from probes import registry


class _Paths:
    """cgroup id -> path table standing in for the cgroup2 tree (the tree walk is tested in identity)."""

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths

    def path_for(self, cgroup_id: int) -> str | None:
        return self.paths.get(cgroup_id)


def _enricher() -> tuple[IdentityEnricher, UnresolvedCounts]:
    counts = UnresolvedCounts()
    paths = _Paths({10: "/system.slice/postgresql.service", 11: "/user.slice/user-0.slice/session-3.scope"})
    resolver = IdentityResolver(paths, None, TierResolver({}), counts, node="node-a")
    return IdentityEnricher(resolver), counts


def test_workload_labels_for_services_and_host() -> None:
    e, counts = _enricher()
    labels = dict(zip(LABELS, e.labels_for_cgroup(10), strict=True))
    assert labels == {"namespace": "", "pod": "", "workload": "postgresql.service", "tier": ""}
    assert dict(zip(LABELS, e.labels_for_cgroup(999), strict=True))["workload"] == ""
    assert counts.counts["cgroup_unknown"] == 1


def test_peer_tier_from_well_known_ports() -> None:
    e, _ = _enricher()
    assert dict(zip(PEER_LABELS, e.peer_labels("10.9.9.9", 5432), strict=True)) == {"peer_namespace": "", "peer_workload": "", "peer_tier": "oltp"}
    assert e.peer_attributes("10.9.9.9", 9092) == {"bcgov.peer.tier": "stream"}
    assert e.peer_attributes("10.9.9.9", 1) == {}


def test_attributes_and_metric_labels_carry_the_workload() -> None:
    e, _ = _enricher()
    attrs = e.attributes_for(10, 4242)
    assert attrs["bcgov.cgroup.id"] == 10 and attrs["bcgov.workload.name"] == "postgresql.service"
    durations = ProbeMetrics(registry.ALL, {}, e).state("bcgov_tcp_connection_duration_seconds")  # what the kernel map's drain adds to
    durations.add(("active", "normal", *e.labels_for_cgroup(10)), [0] * durations.slot_count, 10_000_000)
    assert any(s.labels.get("workload") == "postgresql.service" for s in durations.family().samples)
