"""parse_cgroup_path: one row per cgroup layout (pure, no root needed)."""

from __future__ import annotations

import pytest

from agent.identity.containers import ContainerRef, parse_cgroup_path

CID = "4f1c0e2b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
UID = "7b2a9c1e-5d4f-4e3a-9b8c-1a2b3c4d5e6f"
UID_ = UID.replace("-", "_")

CASES = [
    ("containerd, systemd driver, besteffort",
     f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope",
     ContainerRef("containerd", CID, UID, "besteffort")),
    ("containerd, systemd driver, burstable",
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
     ContainerRef("containerd", CID, UID, "burstable")),
    ("containerd, systemd driver, guaranteed (no QoS slice)",
     f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope",
     ContainerRef("containerd", CID, UID, "guaranteed")),
    ("containerd/K3s, cgroupfs driver, burstable",
     f"/kubepods/burstable/pod{UID}/{CID}", ContainerRef("containerd", CID, UID, "burstable")),
    ("containerd/K3s, cgroupfs driver, guaranteed",
     f"/kubepods/pod{UID}/{CID}", ContainerRef("containerd", CID, UID, "guaranteed")),
    ("pod-level cgroup without a container",
     f"/kubepods/besteffort/pod{UID}", ContainerRef("containerd", None, UID, "besteffort")),
    ("k3d: K3s inside a Docker container (cgroupfs, nested)",
     f"/docker/{'a' * 64}/kubepods/besteffort/pod{UID}/{CID}",
     ContainerRef("containerd", CID, UID, "besteffort")),
    ("CRI-O, systemd driver",
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{CID}.scope",
     ContainerRef("cri-o", CID, UID, "burstable")),
    ("CRI-O conmon belongs to the pod, not a container",
     f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{CID}.scope",
     ContainerRef("cri-o", None, UID, "guaranteed")),
    ("dockershim under kubepods",
     f"/kubepods.slice/kubepods-pod{UID_}.slice/docker-{CID}.scope",
     ContainerRef("docker", CID, UID, "guaranteed")),
    ("Docker, systemd driver", f"/system.slice/docker-{CID}.scope", ContainerRef("docker", CID)),
    ("Docker, cgroupfs driver", f"/docker/{CID}", ContainerRef("docker", CID)),
    ("Podman", f"/machine.slice/libpod-{CID}.scope", ContainerRef("podman", CID)),
    ("systemd service", "/system.slice/nginx.service", ContainerRef("systemd", systemd_unit="nginx.service")),
    ("K3s server under systemd", "/system.slice/k3s.service", ContainerRef("systemd", systemd_unit="k3s.service")),
    ("templated unit collapses to its template",
     "/system.slice/system-getty.slice/getty@tty1.service", ContainerRef("systemd", systemd_unit="getty@.service")),
    ("login session collapses to the user slice",
     "/user.slice/user-1000.slice/session-42.scope", ContainerRef("systemd", systemd_unit="user-1000.slice")),
    ("transient scope collapses to its slice",
     "/system.slice/run-u9876.scope", ContainerRef("systemd", systemd_unit="system.slice")),
    ("Proxmox LXC, systemd service inside",
     "/lxc/101/ns/system.slice/postgresql@15-main.service",
     ContainerRef("lxc", systemd_unit="postgresql@.service", lxc_name="101")),
    ("Proxmox LXC, container init", "/lxc/101/ns/init.scope", ContainerRef("lxc", lxc_name="101")),
    ("Proxmox LXC, container root", "/lxc/101", ContainerRef("lxc", lxc_name="101")),
    ("LXC 4+ payload", "/lxc.payload.minio/system.slice/minio.service",
     ContainerRef("lxc", systemd_unit="minio.service", lxc_name="minio")),
    ("K3s inside a Proxmox LXC",
     f"/lxc/105/ns/kubepods/burstable/pod{UID}/{CID}",
     ContainerRef("containerd", CID, UID, "burstable", lxc_name="105")),
    ("LXC monitor is host-side", "/lxc.monitor/101", ContainerRef("host")),
    ("K3s kubelet started from a shell", "/k3s", ContainerRef("host")),
    ("root", "/", ContainerRef("host")),
    ("PID 1", "/init.scope", ContainerRef("host")),
    ("QoS-level kubelet cgroup", "/kubepods.slice/kubepods-besteffort.slice", ContainerRef("host")),
    ("malformed id is not trusted",
     f"/kubepods/burstable/pod{UID}/{CID[:-1]}", ContainerRef("containerd", None, UID, "burstable")),
    ("unknown layout", "/bcgov-test/whatever/else", ContainerRef("host")),
    # The shapes of issue 14's faults (ids made up there, so here too; the real ones are in the corpus).
    ("kubelet --cgroup-root, systemd driver (kind)",
     "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     f"kubelet-kubepods-besteffort-pod1a2b3c4d_0000_4000_8000_00000000abcd.slice/cri-containerd-{CID}.scope",
     ContainerRef("containerd", CID, "1a2b3c4d-0000-4000-8000-00000000abcd", "besteffort")),
    ("Podman rootful, crun sub-cgroup", f"/machine.slice/libpod-{CID}.scope/container", ContainerRef("podman", CID)),
    ("Podman rootless, crun sub-cgroup",
     f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container",
     ContainerRef("podman", CID)),
    ("any sub-cgroup below a Docker scope", f"/system.slice/docker-{CID}.scope/anything/deeper",
     ContainerRef("docker", CID)),
    ("static pod, CRI-O, 32-hex uid",
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0123456789abcdef0123456789abcdef.slice/crio-{CID}.scope",
     ContainerRef("cri-o", CID, "0123456789abcdef0123456789abcdef", "burstable")),
    ("Podman's conmon is no container", f"/machine.slice/libpod-conmon-{CID}.scope",
     ContainerRef("systemd", systemd_unit="machine.slice")),
]


@pytest.mark.parametrize(("path", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_cgroup_path(path: str, expected: ContainerRef) -> None:
    assert parse_cgroup_path(path) == expected


def test_trailing_and_double_slashes_are_ignored() -> None:
    assert parse_cgroup_path(f"//kubepods//pod{UID}/{CID}/") == ContainerRef("containerd", CID, UID, "guaranteed")
