"""Pod identity end to end: real "pods" (network namespaces on a bridge, cgroups in the kubelet +
containerd layout), real TCP between them, the real agent with the real IdentityEnricher, and the
pods' metadata from a STAND-IN kube-apiserver (no API server can run here; the stand-in serves the
real Pod list/watch wire format to the real ``kubernetes`` client, see
identity/identity_standin_apiserver.py).

The pods:

* ``db/postgres-0``: StatefulSet ``postgres``, tier ``oltp`` from its ``bcgov.io/tier`` label,
  serving on 15432 (a port with no default tier, so only the label can give it);
* ``db/postgres-1``: its replica, listening on the same port in its own network namespace, which
  drops a connection without reading or writing (at its connection limit): with no I/O only the
  listening port could name the accepting pod, and the port is ambiguous between the replicas;
* ``spark/etl-orders-...-exec-1``: a Spark executor (rolled up to SparkApplication ``etl-orders``
  through its spark-app-selector labels), tier ``batch`` from its label: the client;
* ``lake/minio-...``: a Deployment pod (through its ReplicaSet, read from the API), no tier label,
  serving S3 on 9000 dual-stack: tier ``lakehouse`` from the well-known-ports default;
* ``airflow/daily-sales-load-...``: an Airflow task pod (rolled up to its DAG through its
  dag_id/task_id labels), tier ``batch`` from the configured namespace mapping. It starts while the
  agent runs: the watch announces it and its brand-new cgroup must be named on its first event;
  once done it is deleted (cgroup and netns gone), and its series stay for the grace period.

Traffic: the executor makes 3 request/reply connections to postgres, one to MinIO that MinIO
aborts with a reset, and one refused connect to a host address that is no pod; the host (like a
kubelet TCP probe) connects to postgres-1, which drops it; then the Airflow task makes one
connection to postgres.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_harness import RunningAgent, started_agent, wait_for
from netns_pods import PodNetwork, PodSandbox
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent / "identity"))
from identity_standin_apiserver import StandInAPIServer, make_self_signed_cert, write_kubeconfig  # noqa: E402

pytestmark = pytest.mark.ebpf

NODE = "node-e2e"
N_PG = 3  # prime: a count that cannot happen by accident
PG_PORT, MINIO_PORT = 15432, 9000
WORKLOAD = str(Path(__file__).with_name("pod_workload.py"))
SPARK_APP_ID = "spark-5f2b9c81d4e7a3b0c6d1"
MINIO_RS, MINIO_HASH = "minio-7d9f8b6c5d", "7d9f8b6c5d"
TIERS = {"namespaces": {"airflow": "batch"}}


def pod_object(pod: PodSandbox, container: str, port: int | None, labels: dict[str, str],
               owner: tuple[str, str, str] | None) -> dict[str, Any]:
    """The Pod as the API server would return it: the sandbox's uid, IP and container id."""
    spec_container: dict[str, Any] = {"name": container, "image": f"registry.example/{container}:1"}
    if port is not None:
        spec_container["ports"] = [{"containerPort": port, "protocol": "TCP"}]
    meta: dict[str, Any] = {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
                            "resourceVersion": "10", "labels": labels}
    if owner is not None:
        api_version, kind, name = owner
        meta["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": name,
                                    "uid": "00000000-0000-4000-8000-000000000001", "controller": True}]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"nodeName": NODE, "containers": [spec_container]},
        "status": {
            "phase": "Running", "hostIP": "192.0.2.2", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
            "qosClass": "BestEffort",
            "containerStatuses": [{"name": container, "containerID": f"containerd://{pod.container_id}",
                                   "ready": True, "restartCount": 0, "image": spec_container["image"],
                                   "imageID": "", "state": {"running": {}}}],
        },
    }


def minio_replicaset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": MINIO_RS, "namespace": "lake", "uid": "00000000-0000-4000-8000-000000000002",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "minio",
                                          "uid": "00000000-0000-4000-8000-000000000003", "controller": True}]},
        "spec": {"selector": {"matchLabels": {"app": "minio"}}},
    }


@dataclass
class Scenario:
    """The running agent, the pods, and what the workloads reported."""

    agent: RunningAgent
    net: PodNetwork
    pg: PodSandbox
    pg1: PodSandbox
    spark: PodSandbox
    minio: PodSandbox
    airflow: PodSandbox
    client_pid: dict[str, int]
    refused_port: int


def _free_port(ip: str) -> int:
    """A port nothing listens on at ip (bound and closed: a connect to it is refused)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _serve(pod: PodSandbox, bind: str, port: int, n: int, *extra: str) -> Any:
    proc = pod.popen([sys.executable, WORKLOAD, "serve", bind, str(port), str(n), *extra])
    line = proc.stdout.readline()  # blocks until listening (or the server died: empty line)
    assert json.loads(line or "{}").get("listening") == port, proc.stderr.read()
    return proc


def _client(pod: PodSandbox, *args: str) -> tuple[dict[str, Any], int]:
    proc = pod.popen([sys.executable, WORKLOAD, *args])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return json.loads(out), proc.pid


def _start_agent(tmp: Path, kubeconfig: str, cleanup: contextlib.ExitStack) -> tuple[RunningAgent, Any]:
    """The real agent (TCP probes only) with the real IdentityEnricher watching the stand-in."""
    from agent.identity.pod_enricher import IdentityEnricher
    from agent.runtime import AgentParts

    parts = AgentParts()
    enricher = IdentityEnricher.for_node(parts.registry, NODE, kubeconfig=kubeconfig, tiers=TIERS)
    cleanup.callback(enricher.stop)
    assert enricher.wait_synced(10), "the pod watch never listed the stand-in's pods"
    parts.enricher = enricher
    running = cleanup.enter_context(started_agent(tmp, parts, probes=["tcp_lifecycle", "tcp_reset", "oom"]))
    assert all(r.up for r in running.agent.reports), [r.reason for r in running.agent.reports]
    return running, enricher


def _first_pods(pg: PodSandbox, pg1: PodSandbox, spark: PodSandbox, minio: PodSandbox) -> list[dict[str, Any]]:
    return [
        *(pod_object(p, "postgres", PG_PORT,
                     {"app": "postgres", "bcgov.io/tier": "oltp", "statefulset.kubernetes.io/pod-name": p.name},
                     ("apps/v1", "StatefulSet", "postgres")) for p in (pg, pg1)),
        pod_object(spark, "executor", None,
                   {"spark-app-selector": SPARK_APP_ID, "spark-role": "executor",
                    "spark-app-name": "etl-orders", "bcgov.io/tier": "batch"},
                   ("v1", "Pod", "etl-orders-driver")),  # executors are owned by their driver pod
        pod_object(minio, "minio", MINIO_PORT, {"app": "minio", "pod-template-hash": MINIO_HASH},
                   ("apps/v1", "ReplicaSet", MINIO_RS)),
    ]


AIRFLOW_LABELS = {"dag_id": "daily_sales", "task_id": "load", "try_number": "1"}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("pods-e2e")
    # Torn down in reverse: agent, pod watch, stand-in; then the pods and their network.
    with PodNetwork() as net, contextlib.ExitStack() as cleanup:
        pg = net.add_pod("postgres-0", "db", 10)
        pg1 = net.add_pod("postgres-1", "db", 11)
        spark = net.add_pod(f"etl-orders-{SPARK_APP_ID[6:]}-exec-1", "spark", 20)
        minio = net.add_pod(f"{MINIO_RS}-q4x2z", "lake", 30)
        apiserver = StandInAPIServer({"metadata": {"resourceVersion": "10"}, "items": _first_pods(pg, pg1, spark, minio)},
                                     {"replicasets": [minio_replicaset()]})
        cert = make_self_signed_cert(str(tmp))
        kubeconfig = str(tmp / "kubeconfig")
        write_kubeconfig(kubeconfig, apiserver.start(*cert), cert[0])
        cleanup.callback(apiserver.stop)
        running, enricher = _start_agent(tmp, kubeconfig, cleanup)

        pg1_server = _serve(pg1, pg1.ip, PG_PORT, 1, "drop")
        pg_server = _serve(pg, pg.ip, PG_PORT, N_PG + 1)  # listens last: the port's newest listener
        # MinIO (Go) listens dual-stack on [::]: the kernel reports its IPv4 peers as
        # IPv4-mapped IPv6 addresses, which must still resolve to their pods.
        minio_server = _serve(minio, "::", MINIO_PORT, 1, "abort")
        pids = {}
        result, pids["postgres"] = _client(spark, "connect", pg.ip, str(PG_PORT), str(N_PG))
        assert result["ok"] == N_PG, result
        result, pids["minio"] = _client(spark, "connect", minio.ip, str(MINIO_PORT), "1")
        assert result["reset"] == 1, result
        refused_port = _free_port(net.gateway)
        result, pids["refused"] = _client(spark, "refused", net.gateway, str(refused_port))
        assert result["refused"], result
        socket.create_connection((pg1.ip, PG_PORT), timeout=10).close()  # a TCP probe from the host

        # A pod that starts now: new netns and cgroup, announced by a watch event only.
        airflow = net.add_pod("daily-sales-load-x7k2p9q4", "airflow", 40)
        apiserver.push("ADDED", pod_object(airflow, "base", None, AIRFLOW_LABELS, None))
        pods_cache = enricher.pods
        wait_for(lambda: pods_cache.by_uid(airflow.uid), what="the watch to deliver the new pod")
        result, pids["airflow"] = _client(airflow, "connect", pg.ip, str(PG_PORT), "1")
        assert result["ok"] == 1, result
        for server in (pg_server, pg1_server, minio_server):
            assert server.wait(timeout=30) == 0, server.stderr.read()

        # The task is done: the kubelet removes its pod (cgroup, netns) and the API deletes it.
        # Its series must stay on its workload for the deletion grace period.
        wait_for(lambda: len([sp for sp in running.spans() if sp["attrs"].get("client.address") == airflow.ip]) == 2,
                 timeout=90, what="both spans of the Airflow task's connection")
        net.remove_pod(airflow)
        apiserver.push("DELETED", pod_object(airflow, "base", None, AIRFLOW_LABELS, None))
        wait_for(lambda: pods_cache.by_uid(airflow.uid).deleted_at is not None, what="the pod's deletion")
        yield Scenario(running, net, pg, pg1, spark, minio, airflow, pids, refused_port)


# -- what each pod is, in the agent's words -------------------------------------------------------

def own_attrs(s: Scenario, pod: PodSandbox) -> dict[str, Any]:
    """The span/log attributes that say a connection end belongs to this pod's container."""
    base = {"k8s.pod.name": pod.name, "k8s.namespace.name": pod.namespace, "k8s.pod.uid": pod.uid,
            "container.id": pod.container_id, "k8s.node.name": NODE}
    if pod is s.pg:
        return base | {"container.name": "postgres", "bcgov.workload.kind": "StatefulSet",
                       "bcgov.workload.name": "postgres", "k8s.statefulset.name": "postgres", "bcgov.tier": "oltp"}
    if pod is s.spark:
        return base | {"container.name": "executor", "bcgov.workload.kind": "SparkApplication",
                       "bcgov.workload.name": "etl-orders", "bcgov.tier": "batch"}
    if pod is s.airflow:
        return base | {"container.name": "base", "bcgov.workload.kind": "AirflowDAG",
                       "bcgov.workload.name": "airflow-dag/daily_sales", "bcgov.tier": "batch"}
    return base | {"container.name": "minio", "bcgov.workload.kind": "Deployment",
                   "bcgov.workload.name": "minio", "k8s.deployment.name": "minio", "bcgov.tier": "lakehouse"}


def peer_attrs(s: Scenario, pod: PodSandbox) -> dict[str, Any]:
    """The attributes naming this pod as the remote end (no container: only the IP is known)."""
    own = own_attrs(s, pod)
    return {"bcgov.peer." + k.removeprefix("bcgov."): v for k, v in own.items()
            if not k.startswith("container.")}


def subset(attrs: dict[str, Any], want: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Mismatches of want against attrs as {key: (got, want)}: empty when all match."""
    return {k: (attrs.get(k), v) for k, v in want.items() if attrs.get(k) != v}


def conn_spans(s: Scenario, server_ip: str, server_port: int, expect: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        found = [sp for sp in s.agent.spans()
                 if sp["attrs"].get("server.address") == server_ip and sp["attrs"].get("server.port") == server_port]
        return found if len(found) >= expect else None

    # Generous: this agent sees every connection on the machine, other tests' floods included.
    try:
        return wait_for(ready, timeout=90, what=f"{expect} spans for {server_ip}:{server_port}")
    except AssertionError as e:
        lost = s.agent.agent.lost()
        raise AssertionError(f"{e}; records the kernel dropped (ring buffer full): {lost}") from None


def by_kind(spans: list[dict[str, Any]], kind: int) -> list[dict[str, Any]]:
    return [sp for sp in spans if sp["kind"] == kind]


CLIENT, SERVER = 3, 2


# -- spans ----------------------------------------------------------------------------------------

def from_client(spans: list[dict[str, Any]], client: PodSandbox) -> list[dict[str, Any]]:
    return [sp for sp in spans if sp["attrs"]["client.address"] == client.ip]


def test_both_ends_of_pod_to_pod_connections_name_their_pods(scenario: Scenario) -> None:
    s = scenario
    spans = from_client(conn_spans(s, s.pg.ip, PG_PORT, 2 * (N_PG + 1)), s.spark)
    clients, servers = by_kind(spans, CLIENT), by_kind(spans, SERVER)
    assert len(clients) == N_PG and len(servers) == N_PG
    for sp in clients:
        a = sp["attrs"]
        assert subset(a, own_attrs(s, s.spark)) == {}
        assert subset(a, peer_attrs(s, s.pg)) == {}
        assert a["process.pid"] == s.client_pid["postgres"]
        assert a["network.local.address"] == s.spark.ip and a["network.peer.address"] == s.pg.ip
        assert a["bcgov.tcp.outcome"] == "normal"
    for sp in servers:
        a = sp["attrs"]
        assert subset(a, own_attrs(s, s.pg)) == {}
        assert subset(a, peer_attrs(s, s.spark)) == {}
        # the accepting end belongs to the process that read the request inside the postgres pod
        assert a["bcgov.tcp.owner_source"] == "io"
        assert a["network.peer.address"] == s.spark.ip


def test_a_pod_started_while_the_agent_runs_is_named_on_its_first_connection(scenario: Scenario) -> None:
    s = scenario
    spans = from_client(conn_spans(s, s.pg.ip, PG_PORT, 2 * (N_PG + 1)), s.airflow)
    (client,), (server,) = by_kind(spans, CLIENT), by_kind(spans, SERVER)
    assert subset(client["attrs"], own_attrs(s, s.airflow)) == {}
    assert subset(client["attrs"], peer_attrs(s, s.pg)) == {}
    assert client["attrs"]["process.pid"] == s.client_pid["airflow"]
    assert subset(server["attrs"], own_attrs(s, s.pg)) == {}
    assert subset(server["attrs"], peer_attrs(s, s.airflow)) == {}


def test_an_accepted_connection_without_io_is_never_given_to_another_replica(scenario: Scenario) -> None:
    s = scenario
    (server,) = by_kind(conn_spans(s, s.pg1.ip, PG_PORT, 2), SERVER)
    a = server["attrs"]
    # postgres-0 listened on the same port last; the port alone must not name it as the owner.
    assert a["bcgov.tcp.owner_source"] == "unknown"
    assert "k8s.pod.name" not in a and "process.pid" not in a
    assert a["network.local.address"] == s.pg1.ip


def test_reset_connection_names_both_pods_and_the_port_tier(scenario: Scenario) -> None:
    s = scenario
    spans = conn_spans(s, s.minio.ip, MINIO_PORT, 2)
    (client,), (server,) = by_kind(spans, CLIENT), by_kind(spans, SERVER)
    assert client["attrs"]["bcgov.tcp.outcome"] == "reset" == server["attrs"]["bcgov.tcp.outcome"]
    assert subset(client["attrs"], own_attrs(s, s.spark)) == {}
    # MinIO has no tier label: its tier comes from its S3 port, on both ends of the connection
    assert subset(client["attrs"], peer_attrs(s, s.minio)) == {}
    assert subset(server["attrs"], own_attrs(s, s.minio)) == {}
    assert subset(server["attrs"], peer_attrs(s, s.spark)) == {}


def test_a_peer_that_is_no_pod_gets_no_peer_identity(scenario: Scenario) -> None:
    s = scenario
    (span,) = conn_spans(s, s.net.gateway, s.refused_port, 1)
    a = span["attrs"]
    assert span["kind"] == CLIENT and a["bcgov.tcp.outcome"] == "refused"
    assert subset(a, own_attrs(s, s.spark)) == {}
    assert [k for k in a if k.startswith("bcgov.peer.")] == []


# -- logs -----------------------------------------------------------------------------------------

def test_log_lines_carry_the_same_identity_as_their_spans(scenario: Scenario) -> None:
    s = scenario
    spans = conn_spans(s, s.pg.ip, PG_PORT, 2 * (N_PG + 1)) + conn_spans(s, s.minio.ip, MINIO_PORT, 2)
    lines = {r["trace_id"]: r for r in s.agent.logs() if "trace_id" in r}
    by_ip = {p.ip: p for p in (s.pg, s.spark, s.minio, s.airflow)}
    for sp in spans:
        line = lines[sp["traceId"]]
        assert line["span_id"] == sp["spanId"]
        own, peer = by_ip[sp["attrs"]["network.local.address"]], by_ip[sp["attrs"]["network.peer.address"]]
        assert subset(line["attributes"], own_attrs(s, own)) == {}
        assert subset(line["attributes"], peer_attrs(s, peer)) == {}


# -- metrics --------------------------------------------------------------------------------------

def samples(s: Scenario, name: str) -> list[tuple[dict[str, str], float]]:
    text = s.agent.scrape(openmetrics=False)
    return [(smp.labels, smp.value) for fam in text_string_to_metric_families(text)
            for smp in fam.samples if smp.name == name]


def value(s: Scenario, name: str, **labels: str) -> float:
    """The sample whose labels equal these exactly (0 when absent)."""
    return sum(v for got, v in samples(s, name) if got == labels)


SPARK = {"namespace": "spark", "pod": "", "workload": "etl-orders", "tier": "batch"}
PG = {"namespace": "db", "pod": "postgres-0", "workload": "postgres", "tier": "oltp"}
MINIO = {"namespace": "lake", "pod": "", "workload": "minio", "tier": "lakehouse"}
AIRFLOW = {"namespace": "airflow", "pod": "", "workload": "airflow-dag/daily_sales", "tier": "batch"}
NOBODY = {"namespace": "", "pod": "", "workload": "", "tier": ""}
HOST = {"namespace": "", "pod": "", "workload": "host", "tier": ""}  # the node's own end, as everywhere


def peer(labels: dict[str, str]) -> dict[str, str]:
    return {f"peer_{k}": v for k, v in labels.items() if k != "pod"}


def test_connection_counts_are_labelled_by_workload_and_tier(scenario: Scenario) -> None:
    s = scenario
    conn_spans(s, s.pg.ip, PG_PORT, 2 * (N_PG + 1))  # every connection has closed
    conn_spans(s, s.minio.ip, MINIO_PORT, 2)
    name = "bcgov_tcp_connections_total"
    # Spark executors and Deployment pods come and go: their series carry the workload, no pod.
    assert value(s, name, direction="active", outcome="normal", **SPARK) == N_PG
    assert value(s, name, direction="active", outcome="reset", **SPARK) == 1
    assert value(s, name, direction="active", outcome="refused", **SPARK) == 1  # as the span says
    assert value(s, name, direction="active", outcome="normal", **AIRFLOW) == 1  # deleted, in its grace
    # A StatefulSet's pod names are stable: its series keep the pod.
    assert value(s, name, direction="passive", outcome="normal", **PG) == N_PG + 1
    assert value(s, name, direction="passive", outcome="reset", **MINIO) == 1
    hist = "bcgov_tcp_connection_duration_seconds_count"
    assert value(s, hist, direction="active", outcome="normal", **SPARK) == N_PG
    assert value(s, hist, direction="active", outcome="normal", **AIRFLOW) == 1
    assert value(s, hist, direction="passive", outcome="normal", **PG) == N_PG + 1
    assert value(s, hist, direction="passive", outcome="reset", **MINIO) == 1
    for metric in (name, hist):
        for labels, _ in samples(s, metric):
            if labels.get("workload") in ("etl-orders", "minio", "airflow-dag/daily_sales"):
                assert labels["pod"] == "", labels


def test_resets_name_both_ends(scenario: Scenario) -> None:
    s = scenario
    conn_spans(s, s.net.gateway, s.refused_port, 1)
    name = "bcgov_tcp_resets_total"
    assert value(s, name, direction="sent", **MINIO, **peer(SPARK)) == 1
    assert value(s, name, direction="received", **SPARK, **peer(MINIO)) == 1
    # The refused connect: the host (no pod) sent the reset, the executor received it.
    assert value(s, name, direction="sent", **HOST, **peer(SPARK)) == 1
    assert value(s, name, direction="received", **SPARK, **peer(NOBODY)) == 1
    # the gateway is no pod: unknown as the executor's peer, and as the local end of the host's reset
    assert value(s, "bcgov_agent_identity_unresolved_total", reason="peer_unknown") >= 1
    assert value(s, "bcgov_agent_identity_unresolved_total", reason="endpoint_unknown") >= 1


OOM = r"""
import sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:  # a v1 memory cgroup with a small limit
    f.write("0")
chunks = [bytearray(1 << 20) for _ in range(512)]  # touched pages: killed long before the end
"""


def test_an_oom_kill_names_the_pod_even_of_a_workload_whose_pods_come_and_go(scenario: Scenario) -> None:
    """bcgov_oom_kills_total names the pod for every kind (a Spark executor's here), with the same
    namespace, workload and tier as the pod's connections, and the log line names the same pod."""
    s = scenario
    memory = Path("/sys/fs/cgroup/memory") / f"bcgov-test-oom-{s.spark.uid[:8]}"
    memory.mkdir()
    try:
        (memory / "memory.limit_in_bytes").write_text(str(64 << 20))
        done = s.spark.run([sys.executable, "-c", OOM, str(memory)], timeout=60)
        assert done.returncode == -9, done.stderr  # SIGKILL from the OOM killer
        labels = {**SPARK, "pod": s.spark.name}
        wait_for(lambda: value(s, "bcgov_oom_kills_total", **labels) == 1, what="the OOM kill counted for the pod")
        line = wait_for(lambda: next((r for r in s.agent.logs() if r["body"] == "oom kill"
                                      and r["attributes"].get("k8s.pod.uid") == s.spark.uid), None),
                        what="the OOM kill log line")
        assert line["attributes"]["k8s.pod.name"] == s.spark.name
        assert line["attributes"]["bcgov.workload.name"] == SPARK["workload"]
    finally:
        while memory.exists():
            try:
                memory.rmdir()
            except OSError:
                wait_for(lambda: not (memory / "cgroup.procs").read_text().strip(), what="the memory cgroup to empty")
