"""cgroup path -> container runtime, container id and pod uid.

Pure and table-driven: each layout is one entry in ``_LEAF_RULES`` (the innermost cgroup's name) plus
the pod-level patterns, so supporting a new runtime is one line and one test row.

Layouts handled (cgroup2 paths, relative to the cgroup2 root):

* kubelet + systemd driver (containerd, CRI-O, dockershim)::

    /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope
    /kubepods.slice/kubepods-pod<uid_>.slice/crio-<id>.scope          (Guaranteed QoS has no QoS slice)

* kubelet + cgroupfs driver, which is what K3s uses by default::

    /kubepods/burstable/pod<uid>/<id>
    /kubepods/pod<uid>/<id>

  K3s itself uses ``/k3s`` only for the kubelet's own cgroup when started from a shell
  (``--kubelet-cgroups``), never for pods; such processes are reported as "host".
* kubepods nested below another cgroup (k3d / kind inside Docker, K3s inside a Proxmox LXC):
  the kubepods part is searched anywhere in the path, and an enclosing LXC is kept in ``lxc_name``.
* Docker outside Kubernetes: ``/system.slice/docker-<id>.scope`` (systemd), ``/docker/<id>`` (cgroupfs).
* Podman: ``libpod-<id>.scope``.
* systemd services: ``/system.slice/nginx.service``; template instances collapse to ``foo@.service``
  and user sessions to ``user-<uid>.slice`` because socket-activated instances and login sessions
  would otherwise mint a new label value per connection.
* LXC (Proxmox: ``/lxc/<vmid>/ns/...``; LXC 4+: ``/lxc.payload.<name>/...``), with the systemd unit
  inside the container when there is one.
* anything else, including ``/`` and ``/init.scope``: "host".
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

Runtime = Literal["containerd", "cri-o", "docker", "podman", "systemd", "lxc", "host"]

_HEX64 = r"[0-9a-f]{64}"
# Container leaf names. Order matters only in that the first match wins.
_LEAF_RULES: tuple[tuple[re.Pattern[str], Runtime], ...] = (
    (re.compile(rf"^cri-containerd-({_HEX64})\.scope$"), "containerd"),
    (re.compile(rf"^crio-({_HEX64})(?:\.scope)?$"), "cri-o"),
    (re.compile(rf"^docker-({_HEX64})\.scope$"), "docker"),
    (re.compile(rf"^libpod-({_HEX64})(?:\.scope)?$"), "podman"),
    # cgroupfs driver: the bare id; the runtime is not in the name, containerd is the common case.
    (re.compile(rf"^({_HEX64})$"), "containerd"),
)
# CRI-O's conmon monitor runs beside the container; attribute it to the pod, not to a container.
_CONMON = re.compile(rf"^crio-conmon-{_HEX64}\.scope$")

_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD_SYSTEMD = re.compile(rf"^kubepods(?:-(besteffort|burstable))?-pod({_UID})\.slice$")
_POD_CGROUPFS = re.compile(rf"^pod({_UID})$")
_QOS_SYSTEMD = {"kubepods-besteffort.slice": "besteffort", "kubepods-burstable.slice": "burstable"}
_QOS_CGROUPFS = {"besteffort": "besteffort", "burstable": "burstable"}

_DOCKER_CGROUPFS = re.compile(rf"^({_HEX64})$")
_LXC_PAYLOAD = re.compile(r"^lxc\.payload\.(.+)$")
_TEMPLATE_INSTANCE = re.compile(r"^([^@]+)@[^.]*\.(service|socket)$")
_USER_SLICE = re.compile(r"^user-\d+\.slice$")


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerRef:
    """What a cgroup path says about the process inside it.

    ``qos_class`` is "guaranteed", "burstable" or "besteffort" for pods; the other fields are None
    when the layout does not carry them.
    """

    runtime: Runtime = "host"
    container_id: str | None = None
    pod_uid: str | None = None
    qos_class: str | None = None
    systemd_unit: str | None = None
    lxc_name: str | None = None


HOST = ContainerRef()


def parse_cgroup_path(path: str) -> ContainerRef:
    """Classify a cgroup2 path (relative to the cgroup2 root, e.g. ``/kubepods.slice/...``).

    Never raises: unknown layouts are "host" so that unknown input never mints a label value.
    """
    parts = [p for p in path.split("/") if p]
    lxc_name, parts = _strip_lxc(parts)
    ref = _parse_kubepods(parts) or _parse_plain(parts)
    if lxc_name is not None:
        runtime = ref.runtime if ref.pod_uid or ref.container_id else "lxc"
        ref = dataclasses.replace(ref, runtime=runtime, lxc_name=lxc_name)
    return ref


def _strip_lxc(parts: list[str]) -> tuple[str | None, list[str]]:
    """Split off a leading LXC container, returning its name and the path inside it."""
    if len(parts) >= 2 and parts[0] == "lxc":
        inner = parts[2:]
        if inner and inner[0] == "ns":  # Proxmox: lxc.cgroup.dir.container.inner = ns
            inner = inner[1:]
        return parts[1], inner
    if parts and (m := _LXC_PAYLOAD.match(parts[0])):
        return m.group(1), parts[1:]
    return None, parts


def _parse_kubepods(parts: list[str]) -> ContainerRef | None:
    """Find a kubelet pod cgroup anywhere in the path (nested clusters put it below a prefix)."""
    for i, name in enumerate(parts):
        if name == "kubepods.slice":
            return _parse_pod_tail(parts[i + 1 :], systemd=True)
        if name == "kubepods":
            return _parse_pod_tail(parts[i + 1 :], systemd=False)
    return None


def _parse_pod_tail(rest: list[str], *, systemd: bool) -> ContainerRef:
    qos = "guaranteed"
    if rest and (q := (_QOS_SYSTEMD if systemd else _QOS_CGROUPFS).get(rest[0])):
        qos, rest = q, rest[1:]
    if not rest:  # the QoS-level cgroup itself: kubelet bookkeeping, no pod
        return HOST
    m = (_POD_SYSTEMD if systemd else _POD_CGROUPFS).match(rest[0])
    if m is None:
        return HOST
    uid = m.group(m.lastindex or 1).replace("_", "-")
    leaf = rest[1] if len(rest) > 1 else None
    runtime, cid = _match_leaf(leaf) if leaf else (None, None)
    # A pod without a recognised container leaf still belongs to the pod; the runtime is unknown,
    # containerd is what both K3s and kubeadm default to.
    return ContainerRef(runtime=runtime or "containerd", container_id=cid, pod_uid=uid, qos_class=qos)


def _match_leaf(name: str) -> tuple[Runtime | None, str | None]:
    if _CONMON.match(name):
        return "cri-o", None
    for pattern, runtime in _LEAF_RULES:
        if m := pattern.match(name):
            return runtime, m.group(1)
    return None, None


def _parse_plain(parts: list[str]) -> ContainerRef:
    """Docker/Podman outside Kubernetes, systemd units, or the host."""
    if not parts:
        return HOST
    if parts[0] == "docker" and len(parts) >= 2 and _DOCKER_CGROUPFS.match(parts[1]):
        return ContainerRef(runtime="docker", container_id=parts[1])
    leaf = parts[-1]
    runtime, cid = _match_leaf(leaf)
    if runtime is not None and cid is not None and runtime != "containerd":
        return ContainerRef(runtime=runtime, container_id=cid)
    unit = _systemd_unit(parts)
    if unit is not None:
        return ContainerRef(runtime="systemd", systemd_unit=unit)
    return HOST


def _systemd_unit(parts: list[str]) -> str | None:
    if parts[0] == "user.slice":
        for name in parts[1:]:
            if _USER_SLICE.match(name):
                return name
        return "user.slice"
    if parts == ["init.scope"]:
        return None  # PID 1 itself: the host
    # The deepest .service wins: "system.slice/system-getty.slice/getty@tty1.service".
    for name in reversed(parts):
        if name.endswith(".service") or name.endswith(".socket"):
            if m := _TEMPLATE_INSTANCE.match(name):
                return f"{m.group(1)}@.{m.group(2)}"
            return name
    # Transient scopes (systemd-run, run-u123.scope) would mint a value per run: use their slice.
    for name in reversed(parts[:-1]):
        if name.endswith(".slice"):
            return name
    return None
