"""PodCache against a STAND-IN kube-apiserver (see identity_standin_apiserver.py).

No API server can run on the test machines, so the stand-in serves the real Pod list/watch wire
format over HTTPS from recorded fixtures, and the real ``kubernetes`` client talks to it through a
kubeconfig written by the test.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import pytest
from identity_fixtures import standin, standin_cert  # noqa: F401  (pytest fixtures)
from identity_helpers import FakeClock, load_fixture, wait_for
from identity_standin_apiserver import StandInAPIServer

from agent.identity.pods import PodCache

POD_LIST = load_fixture("pods.json")
UID = {p["metadata"]["name"]: p["metadata"]["uid"] for p in POD_LIST["items"]}


@pytest.fixture
def cache(standin: tuple[StandInAPIServer, str]) -> Iterator[tuple[PodCache, StandInAPIServer, FakeClock]]:
    """A started PodCache on node-a, synced against the stand-in, with an injected clock."""
    server, kubeconfig = standin
    clock = FakeClock()
    pc = PodCache("node-a", kubeconfig=kubeconfig, grace_period=300.0, clock=clock,
                  watch_timeout=30, backoff=(0.05, 0.2))
    assert pc.start()
    try:
        assert pc.wait_synced(10)
        yield pc, server, clock
    finally:
        pc.stop()


def _pod(name: str) -> dict:
    return copy.deepcopy(next(p for p in POD_LIST["items"] if p["metadata"]["name"] == name))


def test_initial_list_fills_the_cache_with_this_nodes_pods(cache) -> None:
    pc, server, _ = cache
    names = sorted(p.name for p in pc.pods())
    assert "trino-worker-5c6d7e8f9a-zzzzz" not in names  # on node-b: the field selector excluded it
    assert len(names) == 7
    pg = pc.by_uid(UID["postgres-0"])
    assert pg is not None and (pg.namespace, pg.node, pg.phase) == ("db", "node-a", "Running")
    assert pg.workload_kind == "StatefulSet" and pg.workload_name == "postgres"
    assert sorted(pg.containers.values()) == ["metrics", "postgres"]
    assert all(len(cid) == 64 for cid in pg.containers)  # "containerd://" stripped
    assert pc.by_ip("10.42.0.20") == pg
    assert pc.by_ip("192.168.1.10") is None  # host-network pod: the node IP names no pod
    assert server.list_calls == 1


def test_workload_resolution_and_rollups(cache) -> None:
    pc, server, _ = cache
    want = {
        "trino-coordinator-6d8f7c9b54-x2x7q": ("Deployment", "trino-coordinator"),  # RS read via API
        "superset-7f9c5d8b6-abcde": ("Deployment", "superset"),  # RS 404: pod-template-hash rule
        "nightly-compaction-28912345-h7f2k": ("CronJob", "nightly-compaction"),  # Job read via API
        "etl-orders-8f3a1c0e9b2d-exec-1": ("SparkApplication", "etl-orders"),
        "daily-sales-load-k2j4h5l6": ("AirflowDAG", "airflow-dag/daily_sales"),
        "node-exporter-4kq9z": ("DaemonSet", "node-exporter"),
    }
    for name, expected in want.items():
        p = pc.by_uid(UID[name])
        assert p is not None and (p.workload_kind, p.workload_name) == expected, name
    assert server.owner_gets == 3  # two ReplicaSets and one Job, each read once


def test_watch_events_reach_the_cache(cache) -> None:
    pc, server, _ = cache
    new = _pod("postgres-0")
    new["metadata"].update(name="postgres-1", uid="0b7e8c2a-1111-4222-8333-444455556666")
    new["status"]["podIP"], new["status"]["podIPs"] = "10.42.0.21", [{"ip": "10.42.0.21"}]
    server.push("ADDED", new)
    wait_for(lambda: pc.by_ip("10.42.0.21") is not None)
    assert pc.by_ip("10.42.0.21").name == "postgres-1"

    changed = _pod("postgres-0")
    changed["metadata"]["labels"]["bcgov.io/tier"] = "oltp"
    server.push("MODIFIED", changed)
    wait_for(lambda: pc.by_uid(UID["postgres-0"]).labels.get("bcgov.io/tier") == "oltp")

    server.push("DELETED", _pod("daily-sales-load-k2j4h5l6"))
    wait_for(lambda: pc.by_uid(UID["daily-sales-load-k2j4h5l6"]).deleted_at is not None)
    elsewhere = _pod("trino-worker-5c6d7e8f9a-zzzzz")
    elsewhere["metadata"]["labels"]["x"] = "y"
    server.push("MODIFIED", elsewhere)  # other node: filtered by the server, never seen
    assert server.list_calls == 1
    assert pc.by_uid(UID["trino-worker-5c6d7e8f9a-zzzzz"]) is None


def test_relists_after_410_gone(cache) -> None:
    pc, server, _ = cache
    wait_for(lambda: server.watch_calls == 1)
    # A change the watch will never deliver (history compacted), then the 410.
    server.push("DELETED", _pod("superset-7f9c5d8b6-abcde"))
    wait_for(lambda: pc.by_uid(UID["superset-7f9c5d8b6-abcde"]).deleted_at is not None)
    mod = _pod("postgres-0")
    mod["metadata"]["labels"]["after"] = "gone"
    with server.cond:  # state changes with no event in the log: only a relist can see it
        server.rv += 1
        mod["metadata"]["resourceVersion"] = str(server.rv)
        server.pods[mod["metadata"]["uid"]] = mod
    server.expire_watches()
    wait_for(lambda: server.list_calls == 2)
    wait_for(lambda: pc.by_uid(UID["postgres-0"]).labels.get("after") == "gone")
    assert pc.stats["relists_after_gone"] == 1
    # The relist does not resurrect the deleted pod, and the new watch starts past the compaction.
    assert pc.by_uid(UID["superset-7f9c5d8b6-abcde"]).deleted_at is not None
    wait_for(lambda: server.watch_calls >= 2)


def test_relists_after_dropped_watch(cache) -> None:
    pc, server, _ = cache
    wait_for(lambda: server.watch_calls == 1)
    server.drop_watches()
    wait_for(lambda: server.list_calls == 2)
    assert pc.stats["watch_errors"] >= 1
    server.push("DELETED", _pod("postgres-0"))  # and the new watch works
    wait_for(lambda: pc.by_uid(UID["postgres-0"]).deleted_at is not None)


def test_clean_watch_end_resumes_without_relist(standin) -> None:
    server, kubeconfig = standin
    pc = PodCache("node-a", kubeconfig=kubeconfig, watch_timeout=1, backoff=(0.05, 0.2))
    assert pc.start()
    try:
        wait_for(lambda: server.watch_calls >= 2, timeout=10)
        assert server.list_calls == 1
    finally:
        pc.stop()


def test_deleted_pods_stay_for_the_grace_period_then_expire(cache) -> None:
    pc, server, clock = cache
    uid = UID["etl-orders-8f3a1c0e9b2d-exec-1"]
    server.push("DELETED", _pod("etl-orders-8f3a1c0e9b2d-exec-1"))
    wait_for(lambda: pc.by_uid(uid).deleted_at is not None)
    clock.now += 299
    assert pc.expire() == [] and pc.by_ip("10.42.0.40") is not None
    clock.now += 1
    gone = pc.expire()
    assert [p.uid for p in gone] == [uid]
    assert pc.by_uid(uid) is None and pc.by_ip("10.42.0.40") is None
    assert [p.name for p in pc.pop_expired()] == ["etl-orders-8f3a1c0e9b2d-exec-1"]
    assert pc.pop_expired() == []


def test_no_kubernetes_config_logs_once_and_stays_empty(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    pc = PodCache("node-a")
    with caplog.at_level(logging.WARNING, logger="agent.identity.pods"):
        assert pc.start() is False
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "no Kubernetes config; running with cgroup identity only" in msgs[0]
    assert not pc.available and pc.pods() == [] and pc.by_ip("10.42.0.20") is None
    pc.stop()  # harmless when never started


def test_owner_lookups_are_cached_bounded_and_expire(standin) -> None:
    from kubernetes.client import V1OwnerReference

    from agent.identity import kube
    from agent.identity.owners import OwnerResolver

    server, kubeconfig = standin
    now = [0.0]
    r = OwnerResolver(*kube.owner_apis(kube.load_api_client(kubeconfig)), max_entries=1, ttl=10.0,
                      clock=lambda: now[0])

    def resolve(rs: str) -> tuple[str, str]:
        ref = V1OwnerReference(api_version="apps/v1", kind="ReplicaSet", name=rs, uid="u", controller=True)
        return r.resolve("trino", "p", {"pod-template-hash": rs.rsplit("-", 1)[1]}, [ref])

    assert resolve("trino-coordinator-6d8f7c9b54") == ("Deployment", "trino-coordinator")
    assert resolve("trino-coordinator-6d8f7c9b54") == ("Deployment", "trino-coordinator")
    assert server.owner_gets == 1  # cached
    assert resolve("gone-abc12") == ("Deployment", "gone")  # 404: naming convention, evicts the first
    assert resolve("trino-coordinator-6d8f7c9b54") == ("Deployment", "trino-coordinator")
    assert server.owner_gets == 3  # max_entries=1: re-read
    now[0] = 11.0
    resolve("trino-coordinator-6d8f7c9b54")
    assert server.owner_gets == 4 and r.api_failures == 1  # TTL passed: read again


def test_declared_tcp_ports_keep_spec_order_and_skip_udp() -> None:
    from kubernetes.client import V1Container, V1ContainerPort, V1PodSpec

    from agent.identity.pods import declared_tcp_ports

    spec = V1PodSpec(containers=[
        V1Container(name="minio", ports=[V1ContainerPort(container_port=9000),
                                         V1ContainerPort(container_port=9001, protocol="TCP")]),
        V1Container(name="dns", ports=[V1ContainerPort(container_port=53, protocol="UDP")]),
        V1Container(name="sidecar"),
        V1Container(name="again", ports=[V1ContainerPort(container_port=9000)]),
    ])
    assert declared_tcp_ports(spec) == (9000, 9001)
    assert declared_tcp_ports(None) == ()
