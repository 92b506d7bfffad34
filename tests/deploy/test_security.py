"""Least privilege, asserted: no privileged containers or escalation, every host mount read-only,
exactly the documented capabilities, read-only RBAC on exactly the resources identity reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import manifests
import pytest

# The agent's capabilities, each justified in agent-daemonset.yaml's comments.
AGENT_CAPABILITIES = {"BPF", "PERFMON", "SYS_RESOURCE", "SYS_ADMIN", "DAC_READ_SEARCH"}
# What agent/identity reads: its node's pods, and ReplicaSet/Job owners (owners.py).
AGENT_RBAC = {("", "pods"), ("apps", "replicasets"), ("batch", "jobs"), ("", "persistentvolumes")}
# PVs are only read one by one (block I/O PVC labels, agent/identity/pv_claims.py): get, no list or watch.
GET_ONLY = {("", "persistentvolumes")}
HOST_MOUNTS = {"/sys/kernel/tracing", "/sys/fs/cgroup", "/lib/modules", "/usr/src", "/run/netns"}


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("DaemonSet", "Deployment"):
        for obj in manifests.by_kind(kind):
            yield f"{kind}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


POD_SPECS = list(_pod_specs())


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize(("name", "spec"), POD_SPECS, ids=[n for n, _ in POD_SPECS])
def test_no_privileged_no_escalation_read_only_root(name: str, spec: dict[str, Any]) -> None:
    for c in _containers(spec):
        sc = c.get("securityContext", {})
        assert sc.get("privileged") is not True, f"{name}/{c['name']} is privileged"
        assert sc.get("allowPrivilegeEscalation") is False, f"{name}/{c['name']} must set allowPrivilegeEscalation: false"
        assert sc.get("readOnlyRootFilesystem") is True, f"{name}/{c['name']} needs a read-only root filesystem"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}/{c['name']} must drop ALL first"
        assert "requests" in c.get("resources", {}) and "limits" in c["resources"]


@pytest.mark.parametrize(("name", "spec"), POD_SPECS, ids=[n for n, _ in POD_SPECS])
def test_every_host_path_mount_is_read_only(name: str, spec: dict[str, Any]) -> None:
    host_volumes = {v["name"] for v in spec.get("volumes", []) if "hostPath" in v}
    for c in _containers(spec):
        for m in c.get("volumeMounts", []):
            if m["name"] in host_volumes:
                assert m.get("readOnly") is True, f"{name}/{c['name']} mounts host {m['mountPath']} writable"
                # Bidirectional would let the container's mounts reach the host (and needs privileged).
                assert m.get("mountPropagation", "None") in ("None", "HostToContainer"), f"{name}/{c['name']}: {m}"


def test_agent_daemonset_has_exactly_the_documented_access() -> None:
    ds = manifests.one("DaemonSet", "bcgov-agent")
    spec = ds["spec"]["template"]["spec"]
    (agent,) = spec["containers"]
    assert set(agent["securityContext"]["capabilities"]["add"]) == AGENT_CAPABILITIES
    assert spec["hostPID"] is True
    assert not spec.get("hostNetwork") and not spec.get("hostIPC")
    host_paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths == HOST_MOUNTS
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"], "the agent must tolerate every taint"
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"]
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert any(p["containerPort"] == 9464 for p in agent["ports"])


def test_each_capability_is_explained_in_a_comment() -> None:
    text = (manifests.BASE / "agent-daemonset.yaml").read_text()
    for cap in AGENT_CAPABILITIES:
        assert f"# {cap}:" in text, f"document why the agent needs {cap}"


def test_governor_is_non_root_without_host_access_or_token() -> None:
    dep = manifests.one("Deployment", "bcgov-governor")
    spec = dep["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert not any(spec.get(k) for k in ("hostPID", "hostNetwork", "hostIPC"))
    assert not any("hostPath" in v for v in spec["volumes"])
    assert spec["automountServiceAccountToken"] is False
    (gov,) = spec["containers"]
    assert "add" not in gov["securityContext"]["capabilities"]
    state = next(m for m in gov["volumeMounts"] if m["mountPath"] == "/var/lib/bcgov")
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == state["name"])
    assert "--state-dir=/var/lib/bcgov" in gov["args"]


def test_rbac_is_read_only_on_exactly_the_listed_resources() -> None:
    (role,) = manifests.by_kind("ClusterRole")
    granted = set()
    for rule in role["rules"]:
        resources = {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
        want = ["get"] if resources <= GET_ONLY else ["get", "list", "watch"]
        assert sorted(rule["verbs"]) == want, rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        granted |= resources
    assert granted == AGENT_RBAC
    assert manifests.by_kind("Role") == [] and manifests.by_kind("RoleBinding") == []
    (binding,) = manifests.by_kind("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bcgov-agent", "namespace": "bcgov-system"}]
