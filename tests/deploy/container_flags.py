"""`podman run` flags derived from the DaemonSet manifest, never retyped: when the manifest drifts
(a capability, a mount, readOnlyRootFilesystem, hostPID, a sizeLimit), the container the image
test runs drifts with it.

Mapping (Kubernetes -> podman): capabilities drop/add -> --cap-drop/--cap-add; privileged ->
--privileged; readOnlyRootFilesystem -> --read-only; allowPrivilegeEscalation false ->
--security-opt no-new-privileges; runAsUser -> --user; hostPID -> --pid host; hostNetwork ->
--network host; each hostPath -> a bind mount, read-only where the volumeMount says so; each
emptyDir -> a tmpfs of its sizeLimit; each configMap -> its data written to a directory and
bound read-only; resources.limits -> --memory/--cpus; env fieldRef spec.nodeName -> this host's
name; containerPort -> published on 127.0.0.1; args -> appended to the image's entrypoint.
"""

from __future__ import annotations

import os
import pathlib
import socket
from dataclasses import dataclass, field
from typing import Any

# podman on these hosts (ENVIRONMENT.md): crun refuses hybrid cgroups, default rlimits are refused.
HOST_FLAGS = ("--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")
_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}


def quantity_bytes(q: str) -> int:
    """A Kubernetes memory quantity ("256Mi", "1Gi", "1000") in bytes."""
    for unit, mult in _UNITS.items():
        if q.endswith(unit):
            return int(float(q[: -len(unit)]) * mult)
    return int(q)


def cpu_cores(q: str) -> float:
    """A Kubernetes CPU quantity ("500m", "2") in cores."""
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


@dataclass
class ContainerRun:
    """What `podman run` needs for the DaemonSet's one container."""

    flags: list[str]
    args: list[str]
    metrics_port: int            # the containerPort named "metrics"
    host_port: int               # where it is published on 127.0.0.1
    grace_seconds: int           # terminationGracePeriodSeconds: podman stop -t
    host_paths: list[str] = field(default_factory=list)


def derive(daemonset: dict[str, Any], configmaps: dict[str, dict[str, Any]], workdir: pathlib.Path,
           host_port: int, skip_host_paths: tuple[str, ...] = ()) -> ContainerRun:
    """Flags for the DaemonSet's pod spec; `skip_host_paths` leaves those hostPath volumes out (a
    node without them; the manifest marks them optional with DirectoryOrCreate)."""
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container.get("securityContext", {})
    flags: list[str] = list(HOST_FLAGS)
    caps = sc.get("capabilities", {})
    for cap in caps.get("drop", []):
        flags += ["--cap-drop", cap]
    for cap in caps.get("add", []):
        flags += ["--cap-add", f"CAP_{cap}"]
    if sc.get("privileged"):
        flags.append("--privileged")
    if sc.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if "runAsUser" in sc:
        flags += ["--user", str(sc["runAsUser"])]
    if pod.get("hostPID"):
        flags += ["--pid", "host"]
    if pod.get("hostNetwork"):
        flags += ["--network", "host"]
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        flags += ["--memory", str(quantity_bytes(limits["memory"]))]
    if "cpu" in limits:
        flags += ["--cpus", str(cpu_cores(limits["cpu"]))]
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if ref == "spec.nodeName":
            flags += ["--env", f"{env['name']}={socket.gethostname()}"]
        elif "value" in env:
            flags += ["--env", f"{env['name']}={env['value']}"]
        else:
            raise AssertionError(f"env {env['name']}: no mapping to podman for {env}")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    host_paths = []
    for mount in container.get("volumeMounts", []):
        vol = volumes[mount["name"]]
        ro = ",ro" if mount.get("readOnly") else ""
        if "hostPath" in vol:
            path = vol["hostPath"]["path"]
            if path in skip_host_paths:
                continue
            host_paths.append(path)
            if vol["hostPath"].get("type") == "DirectoryOrCreate":
                os.makedirs(path, exist_ok=True)  # what the kubelet does for this type
            # HostToContainer is a recursive slave mount: mounts the host adds later appear inside.
            prop = ",bind-propagation=rslave" if mount.get("mountPropagation") == "HostToContainer" else ""
            flags += ["--mount", f"type=bind,source={path},destination={mount['mountPath']}{prop}{ro}"]
        elif "emptyDir" in vol:
            size = vol["emptyDir"].get("sizeLimit")
            opts = f",tmpfs-size={quantity_bytes(size)}" if size else ""
            flags += ["--mount", f"type=tmpfs,destination={mount['mountPath']}{opts}"]
        elif "configMap" in vol:
            data = configmaps[vol["configMap"]["name"]]["data"]
            where = workdir / f"configmap-{mount['name']}"
            where.mkdir(parents=True, exist_ok=True)
            for key, text in data.items():
                (where / key).write_text(text, encoding="utf-8")
            flags += ["--mount", f"type=bind,source={where},destination={mount['mountPath']}{ro}"]
        else:
            raise AssertionError(f"volume {mount['name']}: no mapping to podman for {vol}")
    (metrics,) = [p for p in container.get("ports", []) if p.get("name") == "metrics"]
    if not pod.get("hostNetwork"):
        flags += ["--publish", f"127.0.0.1:{host_port}:{metrics['containerPort']}"]
    return ContainerRun(flags, list(container.get("args", [])), int(metrics["containerPort"]), host_port,
                        int(pod.get("terminationGracePeriodSeconds", 30)), host_paths)
