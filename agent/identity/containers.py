"""cgroup path -> container runtime, container id and pod uid.

Pure and table-driven: container cgroup names are one entry each in ``_CONTAINER_RULES``, pod
cgroup names one pattern per kubelet driver, so supporting a new runtime is one line and one row
of the conformance corpus (tests/agent/identity/fixtures/cgroup_corpus.yaml, real paths from other
projects' fixtures and bug reports).

The rules, as general as the layouts they cover (cgroup2 paths relative to the cgroup2 root, or the
path part of a ``/proc/<pid>/cgroup`` line):

* **Pods** are found by their pod cgroup anywhere in the path, so any prefix works: kubelet's
  ``--cgroup-root`` (kind: ``/kubelet.slice/kubelet-kubepods.slice/...``), a node inside a Docker
  or Podman container, K3s in a Proxmox LXC, EKS Fargate's ``/ecs/<task>/...``.

  - systemd driver: ``[<root>-]kubepods[-<qos>]-pod<uid>.slice``, whatever the root's prefix;
  - cgroupfs driver (K3s's default): ``pod<uid>`` below a ``kubepods`` directory (and a QoS one);
  - the uid is dashed (cgroupfs), underscored (systemd) or 32 hex digits: a **static pod**'s uid is
    the kubelet's config hash, which its mirror pod carries in ``kubernetes.io/config.mirror``.

  The container is the cgroup right below the pod's; any depth of sub-cgroups under it (CRI-O's
  ``crio-<id>.scope/container``, a process that made its own) still belongs to that container.
  containerd's ``<pod slice>:cri-containerd:<id>`` name (systemd cgroup parent with a cgroupfs
  kubelet) is split into the same two levels.
* **Containers outside Kubernetes** (Docker, Podman rootful and rootless, Podman under crun with its
  ``/container`` sub-cgroup, Quadlet's ``<unit>.service/libpod-payload-<id>``, containerd's cgroupfs
  ``/<namespace>/<id>`` as in Kata guests and Cloud Shell's ``/k8s.io/<id>``): the innermost
  container cgroup anywhere in the path, with the enclosing ``.service`` kept as ``systemd_unit``.
* **systemd services**: ``/system.slice/nginx.service``; template instances collapse to
  ``foo@.service`` and user sessions to ``user-<uid>.slice`` because socket-activated instances and
  login sessions would otherwise mint a new label value per connection.
* **LXC** (Proxmox: ``/lxc/<vmid>/ns/...``; LXC 4+: ``/lxc.payload.<name>/...``), with the systemd
  unit inside the container when there is one.
* anything else, including ``/``, ``/init.scope`` and Talos' ``/system/...``: "host".

No rule returns a systemd unit, LXC name or slice that contains a pod uid or a container id: only
``pod_uid`` and ``container_id`` carry those (the corpus test asserts it for every path).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

Runtime = Literal["containerd", "cri-o", "docker", "podman", "systemd", "lxc", "host"]

_HEX64 = r"[0-9a-f]{64}"
# Container cgroup names. The first match wins.
_CONTAINER_RULES: tuple[tuple[re.Pattern[str], Runtime], ...] = (
    (re.compile(rf"^cri-containerd-({_HEX64})(?:\.scope)?$"), "containerd"),
    (re.compile(rf"^crio-({_HEX64})(?:\.scope)?$"), "cri-o"),
    (re.compile(rf"^docker-({_HEX64})(?:\.scope)?$"), "docker"),
    (re.compile(rf"^libpod-({_HEX64})(?:\.scope)?$"), "podman"),
    (re.compile(rf"^libpod-payload-({_HEX64})$"), "podman"),  # Quadlet / --cgroups=split
)
# A bare id: the cgroupfs driver's container directory (the runtime is not in the name; containerd
# is what K3s and kubeadm default to) and Docker's cgroupfs ``/docker/<id>``.
_BARE_ID = re.compile(rf"^({_HEX64})$")
# Runtime monitors beside the container: they belong to the pod, not to a container.
_MONITOR = re.compile(rf"^(?:crio|libpod)-conmon-{_HEX64}(?:\.scope)?$")

_UUID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_UID = rf"(?:{_UUID}|[0-9a-f]{{32}})"  # dashed, underscored, or a static pod's config hash
_QOS = {"besteffort": "besteffort", "burstable": "burstable", "guaranteed": "guaranteed"}
_POD_SYSTEMD = re.compile(rf"^(?:.+-)?kubepods(?:-(besteffort|burstable|guaranteed))?-pod({_UID})\.slice$")
_POD_CGROUPFS = re.compile(rf"^pod({_UID})$")
# containerd with a systemd cgroup parent: "<pod slice>:<prefix>:<id>" as one directory name.
_COLON_LEAF = re.compile(rf"^(.+\.slice):([a-z-]+):({_HEX64})$")

# containerd namespaces that name its cgroupfs parents (CRI's k8s.io; nerdctl's and ctr's default)
_CONTAINERD_NAMESPACES = frozenset({"k8s.io", "default"})
_KUBEPODS = re.compile(r"(?:^|-)kubepods(?:[.-]|$)")
_LXC_PAYLOAD = re.compile(r"^lxc\.payload\.(.+)$")
_TEMPLATE_INSTANCE = re.compile(r"^([^@]+)@.*\.(service|socket)$")
_USER_SLICE = re.compile(r"^user-\d+\.slice$")
# A long hex run or a UUID in a name that would become a label value means it names one instance.
_INSTANCE_ID = re.compile(rf"[0-9a-f]{{12,}}|{_UUID}|[0-9a-f]{{8}}-[0-9a-f]{{4}}-")


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
    """Classify a cgroup path (relative to its hierarchy's root, e.g. ``/kubepods.slice/...``).

    Never raises: unknown layouts are "host" so that unknown input never mints a label value.
    """
    parts = _components(path)
    lxc_name, parts = _strip_lxc(parts)
    ref = _parse_pod(parts) or _parse_container(parts) or _parse_systemd(parts)
    if lxc_name is not None:
        runtime = ref.runtime if ref.pod_uid or ref.container_id else "lxc"
        ref = dataclasses.replace(ref, runtime=runtime, lxc_name=lxc_name)
    return ref


def _components(path: str) -> list[str]:
    """Path components without empty ones or ``..`` (a cgroup namespace's view of an outer
    cgroup), with containerd's ``slice:prefix:id`` names split into pod slice and container."""
    out: list[str] = []
    for p in path.split("/"):
        if not p or p in (".", ".."):
            continue
        if ":" in p and (m := _COLON_LEAF.match(p)):
            out += [m.group(1), f"{m.group(2)}-{m.group(3)}.scope"]
        else:
            out.append(p)
    return out


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


def _parse_pod(parts: list[str]) -> ContainerRef | None:
    """A kubelet pod cgroup anywhere in the path, and the container right below it."""
    for i, name in enumerate(parts):
        if (m := _POD_SYSTEMD.match(name)) is not None:
            qos = m.group(1) or "guaranteed"
            uid = m.group(2)
        elif (m := _POD_CGROUPFS.match(name)) is not None and _below_kubepods(parts, i):
            qos = _QOS.get(parts[i - 1], "guaranteed") if i else "guaranteed"
            uid = m.group(1)
        else:
            continue
        uid = uid.replace("_", "-")
        runtime, cid = _match_container(parts[i + 1]) if i + 1 < len(parts) else (None, None)
        # A pod without a recognised container cgroup (the pod level, a monitor) still belongs to
        # the pod; the runtime is then unknown, containerd is what both K3s and kubeadm default to.
        return ContainerRef(runtime=runtime or "containerd", container_id=cid, pod_uid=uid, qos_class=qos)
    return None


def _below_kubepods(parts: list[str], i: int) -> bool:
    """cgroupfs pod directories sit in ``kubepods/`` or ``kubepods/<qos>/``."""
    if i >= 1 and parts[i - 1] == "kubepods":
        return True
    return i >= 2 and parts[i - 1] in _QOS and parts[i - 2] == "kubepods"


def _match_container(name: str) -> tuple[Runtime | None, str | None]:
    if _MONITOR.match(name):
        return ("cri-o" if name.startswith("crio") else "podman"), None
    for pattern, runtime in _CONTAINER_RULES:
        if m := pattern.match(name):
            return runtime, m.group(1)
    if m := _BARE_ID.match(name):
        return "containerd", m.group(1)
    return None, None


def _parse_container(parts: list[str]) -> ContainerRef | None:
    """The innermost container cgroup outside Kubernetes (sub-cgroups below it are ignored)."""
    found: ContainerRef | None = None
    runtime: Runtime | None
    cid: str | None
    for i, name in enumerate(parts):
        if i >= 1 and parts[i - 1] == "docker" and (m := _BARE_ID.match(name)):
            runtime, cid = "docker", m.group(1)  # Docker's cgroupfs driver: /docker/<id>
        elif i >= 1 and parts[i - 1] in _CONTAINERD_NAMESPACES and (m := _BARE_ID.match(name)):
            runtime, cid = "containerd", m.group(1)  # containerd's cgroupfs default: /<namespace>/<id>
        elif _BARE_ID.match(name):
            continue  # a bare id anywhere else names nothing we know
        else:
            runtime, cid = _match_container(name)
        if cid is None or runtime is None:
            continue
        unit = _enclosing_service(parts[:i])
        found = ContainerRef(runtime=runtime, container_id=cid, systemd_unit=unit)
    return found


def _enclosing_service(parts: list[str]) -> str | None:
    """The ``.service`` a container runs in (Quadlet), when its name is a stable one; a rootless
    user's ``user@<uid>.service`` manager is not the container's own unit."""
    for name in reversed(parts):
        if name.endswith(".service") and not name.startswith("user@"):
            return _stable_unit(name)
    return None


def _parse_systemd(parts: list[str]) -> ContainerRef:
    if any(_KUBEPODS.search(p) for p in parts):
        return HOST  # kubelet's QoS-level bookkeeping cgroups: no pod, no unit of anyone's
    unit = _systemd_unit(parts) if parts else None
    return ContainerRef(runtime="systemd", systemd_unit=unit) if unit is not None else HOST


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
        if name.endswith((".service", ".socket")) and (unit := _stable_unit(name)) is not None:
            return unit
    # Transient scopes (systemd-run, run-u123.scope) would mint a value per run: use their slice.
    for name in reversed(parts):
        if name.endswith(".slice") and not _INSTANCE_ID.search(name):
            return name
    return None


def _stable_unit(name: str) -> str | None:
    """A unit name fit for a label: template instances collapse to their template; a name that
    still carries an instance id (a uid, a container id) is no label value at all."""
    if m := _TEMPLATE_INSTANCE.match(name):
        name = f"{m.group(1)}@.{m.group(2)}"
    return None if _INSTANCE_ID.search(name) else name
