"""IdentityResolver end to end: real cgroup path cache, real PodCache fed by the STAND-IN
kube-apiserver (see identity_standin_apiserver.py), real tier resolver and counters."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import prometheus_client
import pytest
from identity_fixtures import cgroup_tree, standin, standin_cert  # noqa: F401  (pytest fixtures)
from identity_helpers import CgroupTree, FakeClock, load_fixture

from agent.identity.cgroups import CgroupPathCache
from agent.identity.pods import PodCache
from agent.identity.resolver import Identity, IdentityResolver, UnresolvedCounts
from agent.identity.tiers import TierResolver

PODS = {p["metadata"]["name"]: p for p in load_fixture("pods.json")["items"]}
TIERS = TierResolver({"namespaces": {"spark": "batch"}})


def _cid(pod: str, container: str) -> str:
    status = next(c for c in PODS[pod]["status"]["containerStatuses"] if c["name"] == container)
    return status["containerID"].removeprefix("containerd://")


def _uid(pod: str, underscores: bool = False) -> str:
    uid = PODS[pod]["metadata"]["uid"]
    return uid.replace("-", "_") if underscores else uid


def _systemd_path(pod: str, container: str) -> str:
    u = _uid(pod, underscores=True)
    return (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/"
            f"cri-containerd-{_cid(pod, container)}.scope")


@pytest.fixture
def pods(standin) -> Iterator[PodCache]:
    _, kubeconfig = standin
    pc = PodCache("node-a", kubeconfig=kubeconfig, clock=FakeClock())
    assert pc.start() and pc.wait_synced(10)
    try:
        yield pc
    finally:
        pc.stop()


class Tree:
    """Plain directories laid out like cgroup2; inode lookup works the same way as on cgroupfs."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.paths = CgroupPathCache(str(root), min_rescan_interval=0.0)

    def id_of(self, rel: str) -> int:
        d = self.root / rel.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        return d.stat().st_ino


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> Tree:
    return Tree(tmp_path)


def test_pod_container_gets_full_identity(tree: Tree, pods: PodCache) -> None:
    counts = UnresolvedCounts()
    r = IdentityResolver(tree.paths, pods, TIERS, counts, node="node-a")
    ident = r.for_cgroup(tree.id_of(_systemd_path("postgres-0", "postgres")), port=5432)
    assert ident == Identity(
        namespace="db", pod="postgres-0", pod_uid=_uid("postgres-0"), workload="postgres",
        workload_kind="StatefulSet", container="postgres", container_id=_cid("postgres-0", "postgres"),
        runtime="containerd", tier="oltp", node="node-a",
    )
    assert ident.to_prom_labels() == {"namespace": "db", "pod": "postgres-0", "workload": "postgres", "tier": "oltp"}
    attrs = ident.to_otel_attributes()
    assert attrs["k8s.statefulset.name"] == "postgres" and attrs["container.name"] == "postgres"
    assert attrs["k8s.pod.uid"] == _uid("postgres-0") and attrs["bcgov.tier"] == "oltp"
    assert "k8s.deployment.name" not in attrs and not counts.counts


@pytest.mark.parametrize(
    ("pod", "container", "port", "kind_attr", "labels"),
    [
        ("trino-coordinator-6d8f7c9b54-x2x7q", "trino", 8080, "k8s.deployment.name",
         {"namespace": "trino", "pod": "", "workload": "trino-coordinator", "tier": "serving"}),
        ("nightly-compaction-28912345-h7f2k", "compact", None, "k8s.cronjob.name",
         {"namespace": "batch", "pod": "", "workload": "nightly-compaction", "tier": ""}),
        ("etl-orders-8f3a1c0e9b2d-exec-1", "spark-kubernetes-executor", None, None,
         {"namespace": "spark", "pod": "", "workload": "etl-orders", "tier": "batch"}),
        ("daily-sales-load-k2j4h5l6", "base", None, None,
         {"namespace": "airflow", "pod": "", "workload": "airflow-dag/daily_sales", "tier": ""}),
    ],
)
def test_short_lived_and_rolling_pods_carry_their_workload(tree, pods, pod, container, port, kind_attr, labels):
    r = IdentityResolver(tree.paths, pods, TIERS, node="node-a")
    ident = r.for_cgroup(tree.id_of(f"/kubepods/besteffort/pod{_uid(pod)}/{_cid(pod, container)}"), port=port)
    assert ident.pod == pod and ident.container == container
    assert ident.to_prom_labels() == labels
    assert ident.to_prom_labels(per_pod=True)["pod"] == pod
    if kind_attr:
        assert ident.to_otel_attributes()[kind_attr] == labels["workload"]
    assert ident.to_otel_attributes(prefix="bcgov.peer.")["bcgov.peer.k8s.pod.name"] == pod


def test_unresolved_reasons_are_counted_into_a_prometheus_counter(tree: Tree, pods: PodCache) -> None:
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("bcgov_agent_identity_unresolved", "unresolved", ["reason"], registry=registry)
    r = IdentityResolver(tree.paths, pods, TIERS, counter, node="node-a")
    stranger = "0f0f0f0f-1111-4222-8333-444455556666"
    ident = r.for_cgroup(tree.id_of(f"/kubepods/pod{stranger}/{'ab' * 32}"), port=9000)
    assert (ident.pod_uid, ident.container_id, ident.tier, ident.pod) == (stranger, "ab" * 32, "lakehouse", None)
    assert r.for_cgroup(123_456_789) == Identity(node="node-a")
    assert r.for_peer("203.0.113.9", 40000) is None
    assert r.for_peer("192.168.1.10", 40001, local=True) is None  # this node's end, not a pod

    def value(reason: str) -> float:
        return registry.get_sample_value("bcgov_agent_identity_unresolved_total", {"reason": reason}) or 0.0

    reasons = ("pod_unknown", "cgroup_unknown", "peer_unknown", "endpoint_unknown")
    assert [value(x) for x in reasons] == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("rel", "workload", "kind", "unit"),
    [
        ("/system.slice/nginx.service", "nginx.service", "SystemdUnit", "nginx.service"),
        ("/lxc/101/ns/system.slice/postgresql.service", "lxc/101", "LXC", "postgresql.service"),
        ("/init.scope", "host", "Host", None),
        (f"/system.slice/docker-{'cd' * 32}.scope", None, "Container", None),
    ],
)
def test_non_kubernetes_processes_are_useful_without_kubernetes(tree, rel, workload, kind, unit) -> None:
    counts = UnresolvedCounts()
    r = IdentityResolver(tree.paths, None, TIERS, counts, node="pve1")
    ident = r.for_cgroup(tree.id_of(rel), port=5432)
    assert (ident.workload, ident.workload_kind, ident.systemd_unit, ident.tier) == (workload, kind, unit, "oltp")
    assert ident.to_prom_labels()["workload"] == (workload or "") and not counts.counts


def test_pod_cgroups_without_kubernetes_are_counted(tree: Tree, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    pc = PodCache("node-a")
    assert not pc.start()
    counts = UnresolvedCounts()
    r = IdentityResolver(tree.paths, pc, TIERS, counts)
    ident = r.for_cgroup(tree.id_of(_systemd_path("postgres-0", "postgres")))
    assert ident.pod_uid == _uid("postgres-0") and ident.runtime == "containerd"
    assert counts.counts == {"no_kubernetes": 1}


def test_peer_resolution_by_pod_ip(tree: Tree, pods: PodCache) -> None:
    r = IdentityResolver(tree.paths, pods, TIERS, node="node-a")
    peer = r.for_peer("10.42.0.20", 5432)
    assert peer is not None and (peer.pod, peer.workload, peer.tier) == ("postgres-0", "postgres", "oltp")
    assert peer.to_prom_labels(prefix="peer_") == {
        "peer_namespace": "db", "peer_pod": "postgres-0", "peer_workload": "postgres", "peer_tier": "oltp"}
    assert r.for_peer("192.168.1.10", 9100) is None  # the node IP (host-network pod) is no pod
    assert r.for_peer("198.51.100.7", 9092) == Identity(tier="stream")  # external broker: tier only


@pytest.mark.ebpf
def test_real_process_in_real_cgroup_resolves_to_its_pod(cgroup_tree: CgroupTree, pods: PodCache) -> None:
    """The whole chain on the real kernel: process -> /proc cgroup -> cgroup id -> pod."""
    d = cgroup_tree.make(_systemd_path("trino-coordinator-6d8f7c9b54-x2x7q", "trino"))
    proc = cgroup_tree.run_in(d)
    with open(f"/proc/{proc.pid}/cgroup") as f:
        rel = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    cgroup_id = os.stat(cgroup_tree.cgroup2_root + rel).st_ino
    r = IdentityResolver(CgroupPathCache(), pods, TIERS, node="node-a")
    ident = r.for_cgroup(cgroup_id, port=8080)
    assert (ident.namespace, ident.workload, ident.workload_kind, ident.container, ident.tier) == (
        "trino", "trino-coordinator", "Deployment", "trino", "serving")
