"""The image test's podman flags come from agent-daemonset.yaml: each setting maps to its flag,
and changing the manifest changes the flags (no retyped copy can hide a drift)."""

from __future__ import annotations

import copy
from pathlib import Path

import container_flags
import manifests


def _derive(ds: dict, tmp: Path, skip: tuple[str, ...] = ()) -> container_flags.ContainerRun:
    cms = {d["metadata"]["name"]: d for d in manifests.by_kind("ConfigMap")}
    return container_flags.derive(ds, cms, tmp, 40000, skip_host_paths=skip)


def _pairs(flags: list[str], flag: str) -> list[str]:
    return [flags[i + 1] for i, f in enumerate(flags) if f == flag]


def test_the_shipped_daemonset_maps_to_least_privilege_flags(tmp_path: Path) -> None:
    ds = manifests.one("DaemonSet", "bcgov-agent")
    run = _derive(ds, tmp_path)
    f = run.flags
    sc = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert _pairs(f, "--cap-drop") == ["ALL"]
    assert _pairs(f, "--cap-add") == [f"CAP_{c}" for c in sc["capabilities"]["add"]]
    assert "--privileged" not in f and "--read-only" in f
    assert _pairs(f, "--security-opt") == ["no-new-privileges"] and _pairs(f, "--pid") == ["host"]
    mounts = _pairs(f, "--mount")
    binds = [m for m in mounts if m.startswith("type=bind")]
    assert binds and all(m.endswith(",ro") for m in binds)  # every host path and the config: read-only
    assert {m.split("source=")[1].split(",")[0] for m in binds if "configmap-" not in m} == set(run.host_paths)
    assert "type=tmpfs,destination=/opt/bcgov/var,tmpfs-size=1073741824" in mounts
    # pods' network namespaces bind-mounted after the agent started must appear inside it
    assert "type=bind,source=/run/netns,destination=/run/netns,bind-propagation=rslave,ro" in mounts
    assert (tmp_path / "configmap-config" / "agent.yaml").read_text().startswith("# Agent configuration")
    assert _pairs(f, "--publish") == [f"127.0.0.1:40000:{run.metrics_port}"]
    assert run.args == ["--config", "/etc/bcgov/agent.yaml"]


def test_a_drifted_manifest_drifts_the_flags(tmp_path: Path) -> None:
    ds = copy.deepcopy(manifests.one("DaemonSet", "bcgov-agent"))
    pod = ds["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    sc["capabilities"]["add"].append("NET_ADMIN")
    sc["readOnlyRootFilesystem"] = False
    sc["privileged"] = True
    pod["hostPID"] = False
    pod["volumes"].append({"name": "extra", "hostPath": {"path": "/var/log"}})
    pod["containers"][0]["volumeMounts"].append({"name": "extra", "mountPath": "/host/log"})
    f = _derive(ds, tmp_path).flags
    assert "CAP_NET_ADMIN" in _pairs(f, "--cap-add")
    assert "--read-only" not in f and "--privileged" in f and "--pid" not in f
    assert "type=bind,source=/var/log,destination=/host/log" in _pairs(f, "--mount")  # not read-only: visible


def test_a_node_without_headers_leaves_out_the_optional_mounts(tmp_path: Path) -> None:
    ds = manifests.one("DaemonSet", "bcgov-agent")
    run = _derive(ds, tmp_path, skip=("/lib/modules", "/usr/src"))
    assert "/lib/modules" not in run.host_paths and "/usr/src" not in run.host_paths
    assert "/sys/kernel/tracing" in run.host_paths
    optional = {v["hostPath"]["path"]: v["hostPath"].get("type") for v in ds["spec"]["template"]["spec"]["volumes"]
                if "hostPath" in v}
    assert optional["/lib/modules"] == optional["/usr/src"] == "DirectoryOrCreate"
