"""One identity for every family: the local end's tier from its listening port, the node's own end
of a 4-tuple counter labelled like its connections, OOM kills by pod, outcomes shared by counter,
histogram and span, and network.type by the address actually used (pure; the same on the real
kernel with PostgreSQL in test_connection_identity_ebpf.py)."""

from __future__ import annotations

import json
import socket
import types

from agent_harness import connection

from agent.identity.pod_enricher import LABELS, IdentityEnricher
from agent.identity.pods import PodInfo
from agent.identity.resolver import IdentityResolver, UnresolvedCounts
from agent.identity.tiers import TierResolver
from probes import tcp_lifecycle
from probes.tcp_lifecycle import ERROR_TYPES, connection_attributes, connection_json_members, network_type, server_port

PG_CGROUP, WEB_CGROUP, HOST_CGROUP = 10, 11, 12
WEB_UID = "7b2a9c1e-5d4f-4e3a-9b8c-1a2b3c4d5e6f"
CID = "4f1c0e2b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"


class _Paths:
    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths

    def path_for(self, cgroup_id: int) -> str | None:
        return self.paths.get(cgroup_id)


class _Pods:
    """The PodCache protocol over fixed pods (PodCache itself is tested against the stand-in)."""

    available = True

    def __init__(self, pods: list[PodInfo]) -> None:
        self._pods = pods

    def by_uid(self, uid: str) -> PodInfo | None:
        return next((p for p in self._pods if p.uid == uid), None)

    def by_ip(self, ip: str) -> PodInfo | None:
        return next((p for p in self._pods if ip in p.ips), None)


WEB = PodInfo(WEB_UID, "shop", "web-5c6d7e8f9a-zzzzz", "node-a", ("10.42.0.9",), types.MappingProxyType({}),
              "Deployment", "web", types.MappingProxyType({CID: "web"}), "Running")


def _enricher() -> tuple[IdentityEnricher, UnresolvedCounts]:
    counts = UnresolvedCounts()
    paths = _Paths({
        PG_CGROUP: "/system.slice/postgresql@15-main.service",
        WEB_CGROUP: f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{WEB_UID.replace('-', '_')}.slice/"
                    f"cri-containerd-{CID}.scope",
        HOST_CGROUP: "/",
    })
    return IdentityEnricher(IdentityResolver(paths, _Pods([WEB]), TierResolver(), counts, node="node-a")), counts


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(LABELS, values, strict=True))


def test_the_server_end_takes_its_tier_from_its_listening_port() -> None:
    e, _ = _enricher()
    assert _labels(e.workload_labels(PG_CGROUP, 5432)) == {
        "namespace": "", "pod": "", "workload": "postgresql@.service", "tier": "oltp"}
    assert _labels(e.workload_labels(PG_CGROUP))["tier"] == ""  # its own client connections: no tier
    attrs = e.workload_attributes(PG_CGROUP, 0, 5432)
    assert attrs["bcgov.tier"] == "oltp" and attrs["bcgov.workload.name"] == "postgresql@.service"
    passive = connection(direction="passive", local_port=5432, remote_port=40000)
    assert server_port(passive) == 5432 and server_port(connection(direction="active")) is None


def test_a_4tuple_counters_local_end_is_labelled_like_its_connections() -> None:
    e, counts = _enricher()
    # the port's single listener is known (tcp_lifecycle's listeners map): exactly its connections' labels
    assert e.endpoint_labels("192.168.1.10", 5432, PG_CGROUP) == e.workload_labels(PG_CGROUP, 5432)
    # a pod's address: the pod, as its cgroup gives it
    assert _labels(e.endpoint_labels("10.42.0.9", 8080)) == _labels(e.workload_labels(WEB_CGROUP, 8080))
    # the node's own end, no listener known: the host, as a host process's connections are labelled
    host = _labels(e.endpoint_labels("192.168.1.10", 41000))
    assert host == _labels(e.workload_labels(HOST_CGROUP)) == {"namespace": "", "pod": "", "workload": "host", "tier": ""}
    assert counts.counts["endpoint_unknown"] == 1


def test_oom_kills_name_the_pod_of_any_workload_kind() -> None:
    e, _ = _enricher()
    assert _labels(e.workload_labels(WEB_CGROUP))["pod"] == ""  # a Deployment's pods come and go
    assert _labels(e.workload_labels(WEB_CGROUP, per_pod=True)) == {
        "namespace": "shop", "pod": "web-5c6d7e8f9a-zzzzz", "workload": "web", "tier": ""}


def test_counter_histogram_and_span_share_one_outcome_vocabulary() -> None:
    assert tcp_lifecycle.KERNEL_OUTCOMES == tcp_lifecycle.DURATION_OUTCOMES == tcp_lifecycle.OUTCOMES
    spans = {tcp_lifecycle.outcome_of(flags) for flags in range(256)}
    assert spans == set(tcp_lifecycle.OUTCOMES.values())
    assert set(ERROR_TYPES) <= spans


def test_network_type_follows_the_address_used() -> None:
    mapped = connection(family=socket.AF_INET6, local_addr="127.0.0.1", remote_addr="127.0.0.1", direction="passive")
    assert network_type(mapped) == "ipv4"
    assert network_type(connection(family=socket.AF_INET6, local_addr="::1", remote_addr="::1")) == "ipv6"
    assert network_type(connection(family=socket.AF_INET)) == "ipv4"


def test_span_and_log_line_mark_a_connection_older_than_the_agent() -> None:
    for ev in (connection(before_agent=True, family=socket.AF_INET6, local_addr="127.0.0.1", remote_addr="127.0.0.1"),
               connection(before_agent=False), connection(before_agent=True, outcome="reset")):
        attrs = connection_attributes(ev)
        assert json.loads("{" + connection_json_members(ev) + "}") == attrs
        assert list(json.loads("{" + connection_json_members(ev) + "}")) == list(attrs)  # same order
        assert attrs.get("bcgov.tcp.start_observed", True) is (not ev.before_agent)
