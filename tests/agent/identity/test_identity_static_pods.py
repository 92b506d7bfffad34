"""Static pods (etcd, kube-apiserver on control-plane nodes): the kubelet runs them under a 32-hex
uid (its config hash) with no dashes, while their API object, the mirror pod, has its own dashed
uid and carries the 32-hex one in ``kubernetes.io/config.mirror``. Served by the STAND-IN
kube-apiserver (identity_standin_apiserver.py), read by the real PodCache."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from identity_fixtures import standin, standin_cert  # noqa: F401  (pytest fixtures)
from identity_helpers import load_fixture, wait_for
from identity_standin_apiserver import StandInAPIServer

from agent.identity.pods import PodCache
from agent.identity.resolver import IdentityResolver, UnresolvedCounts
from agent.identity.tiers import TierResolver

CONFIG_HASH = "0123456789abcdef0123456789abcdef"  # the kubelet's uid for the static pod
MIRROR_UID = "5f0c3a1e-7b2d-4c9e-8a61-2d4e6f8a0b1c"  # the API server's uid for its mirror
CID = "c74b0f5062f0bc726cae1e9369ad4a95deed6b298d247f0407475adb23fa3190"


def _mirror_pod() -> dict:
    """kube-apiserver's mirror pod as a kubeadm control-plane node's API shows it."""
    pod = copy.deepcopy(next(p for p in load_fixture("pods.json")["items"] if p["metadata"]["name"] == "postgres-0"))
    pod["metadata"] = {
        "name": "kube-apiserver-node-a", "namespace": "kube-system", "uid": MIRROR_UID, "resourceVersion": "150",
        "labels": {"component": "kube-apiserver", "tier": "control-plane"},
        "annotations": {
            "kubernetes.io/config.hash": CONFIG_HASH,
            "kubernetes.io/config.mirror": CONFIG_HASH,
            "kubernetes.io/config.seen": "2025-01-14T07:59:58.123456789Z",
            "kubernetes.io/config.source": "file",
        },
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-a",
                             "uid": "9d1e2f3a-4b5c-4d6e-8f70-112233445566", "controller": True}],
    }
    pod["spec"]["hostNetwork"] = True
    pod["status"]["podIP"], pod["status"]["podIPs"] = "192.168.1.10", [{"ip": "192.168.1.10"}]
    pod["status"]["containerStatuses"] = [
        {**pod["status"]["containerStatuses"][0], "name": "kube-apiserver", "containerID": f"cri-o://{CID}"}]
    return pod


class _Paths:
    def __init__(self, paths: dict[int, str]) -> None:
        self._paths = paths

    def path_for(self, cgroup_id: int) -> str | None:
        return self._paths.get(cgroup_id)


@pytest.fixture
def pods(standin: tuple[StandInAPIServer, str]) -> Iterator[tuple[PodCache, StandInAPIServer]]:
    server, kubeconfig = standin
    pc = PodCache("node-a", kubeconfig=kubeconfig, watch_timeout=30, backoff=(0.05, 0.2))
    assert pc.start()
    try:
        assert pc.wait_synced(10)
        yield pc, server
    finally:
        pc.stop()


def test_static_pod_cgroup_resolves_to_its_mirror_pod(pods) -> None:
    pc, server = pods
    server.push("ADDED", _mirror_pod())
    wait_for(lambda: pc.by_uid(MIRROR_UID) is not None)
    assert pc.by_uid(CONFIG_HASH).uid == MIRROR_UID  # the cgroup's uid finds the API object

    path = (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{CONFIG_HASH}.slice/"
            f"crio-{CID}.scope")
    unresolved = UnresolvedCounts()
    who = IdentityResolver(_Paths({11: path}), pc, TierResolver(), unresolved).for_cgroup(11)
    assert (who.namespace, who.pod, who.pod_uid) == ("kube-system", "kube-apiserver-node-a", MIRROR_UID)
    assert (who.workload_kind, who.workload) == ("StaticPod", "kube-apiserver")
    assert (who.container, who.container_id, who.runtime) == ("kube-apiserver", CID, "cri-o")
    assert who.to_prom_labels()["pod"] == "kube-apiserver-node-a"  # stable name: shown per pod
    assert not unresolved.counts

    server.push("DELETED", _mirror_pod())
    wait_for(lambda: pc.by_uid(MIRROR_UID).deleted_at is not None)
    assert pc.by_uid(CONFIG_HASH).deleted_at is not None  # still resolvable during its grace


def test_a_static_uid_without_its_mirror_pod_is_unknown(pods) -> None:
    pc, _ = pods
    unresolved = UnresolvedCounts()
    path = f"/kubepods/burstable/pod{CONFIG_HASH}/{CID}"
    who = IdentityResolver(_Paths({11: path}), pc, TierResolver(), unresolved).for_cgroup(11)
    assert (who.pod, who.pod_uid, who.container_id) == (None, CONFIG_HASH, CID)
    assert unresolved.counts == {"pod_unknown": 1}
