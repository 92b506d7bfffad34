"""Block device -> name, mount and PVC: tables over a real K3s node's mountinfo and a sysfs tree
laid out as the kernel lays it out (real files in a temporary directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.identity.block_devices import (
    BlockDeviceResolver,
    KubeletVolume,
    Mount,
    kubelet_volume,
    parse_mountinfo,
    partitions_of,
    pick_mount,
    read_device_name,
)

POD = "0f3c2a1e-7d7b-4c5e-9a51-2f6f0c1d9e42"
PV = "pvc-5b8e7f0e-3c2d-4b1a-8f9e-1a2b3c4d5e6f"

# /proc/1/mountinfo of a K3s node: root on a partition of vda, a data disk (vdb) holding a CSI
# volume mounted globally and into a pod, a bind mount of a subdirectory, a path with a space.
K3S_MOUNTINFO = f"""\
22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
23 28 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
29 28 254:15 / /boot/efi rw,relatime shared:3 - vfat /dev/vda15 rw,fmask=0022
30 28 0:26 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=401564k,mode=755
41 28 254:1 /var/lib/rancher/k3s/storage /srv/local\\040path rw,relatime shared:1 - ext4 /dev/vda1 rw
512 28 254:16 / /var/lib/kubelet/plugins/kubernetes.io/csi/driver.longhorn.io/3f1e/globalmount rw,relatime shared:300 - ext4 /dev/vdb rw
530 28 254:16 / /var/lib/kubelet/pods/{POD}/volumes/kubernetes.io~csi/{PV}/mount rw,relatime shared:300 - ext4 /dev/vdb rw
531 28 0:88 / /var/lib/kubelet/pods/{POD}/volumes/kubernetes.io~projected/kube-api-access-x7k2p rw,relatime shared:310 - tmpfs tmpfs rw,size=65536k
600 28 0:95 / /run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw,relatime shared:320 - overlay overlay rw,lowerdir=/a,upperdir=/b
this line is not mountinfo at all
"""


def _sysfs(root: Path, disks: dict[str, tuple[str, list[tuple[str, str]]]]) -> Path:
    """sysfs as the kernel lays it out: /sys/dev/block/MAJ:MIN/{uevent,dev,<part>/{partition,dev}}."""
    for devnum, (name, parts) in disks.items():
        d = root / "dev/block" / devnum
        d.mkdir(parents=True)
        (d / "uevent").write_text(f"MAJOR={devnum.split(':')[0]}\nMINOR={devnum.split(':')[1]}\nDEVNAME={name}\nDEVTYPE=disk\n")
        (d / "dev").write_text(devnum + "\n")
        for part_name, part_num in parts:
            p = d / part_name
            p.mkdir()
            (p / "partition").write_text(part_name[-1] + "\n")
            (p / "dev").write_text(part_num + "\n")
    return root


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    return _sysfs(tmp_path / "sys", {
        "254:0": ("vda", [("vda1", "254:1"), ("vda15", "254:15")]),
        "254:16": ("vdb", []),
        "7:3": ("loop3", []),
    })


def test_parse_mountinfo_fields_escapes_and_junk() -> None:
    mounts = parse_mountinfo(K3S_MOUNTINFO)
    assert len(mounts) == 10  # the junk line is skipped
    assert mounts[2] == Mount(254, 1, "/", "/", "ext4", "/dev/vda1")
    assert mounts[5].mount_point == "/srv/local path" and mounts[5].root == "/var/lib/rancher/k3s/storage"
    assert mounts[7].source == "/dev/vdb" and mounts[7].fstype == "ext4"


@pytest.mark.parametrize("path, want", [
    (f"/var/lib/kubelet/pods/{POD}/volumes/kubernetes.io~csi/{PV}/mount", KubeletVolume(POD, "kubernetes.io/csi", PV)),
    (f"/var/lib/kubelet/pods/{POD}/volumes/kubernetes.io~local-volume/local-pv-1", KubeletVolume(POD, "kubernetes.io/local-volume", "local-pv-1")),
    (f"/var/lib/kubelet/pods/{POD}/volume-subpaths/data/app/0", None),
    (f"/var/lib/kubelet/pods/{POD}/volumes", None),
    ("/var/lib/kubelet/plugins/kubernetes.io/csi/driver.longhorn.io/3f1e/globalmount", None),
    ("/srv/data", None),
])
def test_kubelet_volume_paths(path: str, want: KubeletVolume | None) -> None:
    assert kubelet_volume(path) == want


def test_kubelet_volume_under_a_custom_kubelet_root() -> None:
    path = f"/data/kubelet/pods/{POD}/volumes/kubernetes.io~csi/{PV}/mount"
    assert kubelet_volume(path) is None
    assert kubelet_volume(path, kubelet_root="/data/kubelet/") == KubeletVolume(POD, "kubernetes.io/csi", PV)


@pytest.mark.parametrize("devs, want", [
    ({(254, 1), (254, 15)}, "/"),                       # root partition and the EFI one: the shortest
    ({(254, 16)}, "/var/lib/kubelet/plugins/kubernetes.io/csi/driver.longhorn.io/3f1e/globalmount"),
    (set(), ""),
])
def test_pick_mount(devs: set[tuple[int, int]], want: str) -> None:
    mounts = [m for m in parse_mountinfo(K3S_MOUNTINFO) if (m.major, m.minor) in devs]
    assert pick_mount(mounts) == want


def test_pick_mount_prefers_the_filesystem_root_over_a_bind_of_a_subdirectory() -> None:
    bind = Mount(8, 0, "/exports", "/a", "xfs", "/dev/sda")
    own = Mount(8, 0, "/", "/mnt/data", "xfs", "/dev/sda")
    assert pick_mount([bind, own]) == "/mnt/data"
    assert pick_mount([bind]) == "/a"


def test_device_names_and_partitions_from_sysfs(sysfs: Path) -> None:
    assert read_device_name(sysfs, 254, 0) == "vda"
    assert read_device_name(sysfs, 7, 3) == "loop3"
    assert read_device_name(sysfs, 8, 0) == "8:0"  # unknown to sysfs: the number, not an error
    assert partitions_of(sysfs, 254, 0) == [(254, 1), (254, 15)]
    assert partitions_of(sysfs, 7, 3) == []
    assert partitions_of(sysfs, 8, 0) == []


def _resolver(sysfs: Path, tmp_path: Path, claims=None, **kw) -> BlockDeviceResolver:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(K3S_MOUNTINFO)
    return BlockDeviceResolver(sys_root=sysfs, mountinfo_paths=[tmp_path / "unreadable", mountinfo], claims=claims, **kw)


@pytest.mark.parametrize("devnum, device, mount", [
    ((254, 0), "vda", "/"),               # the disk is mounted through its partitions
    ((7, 3), "loop3", ""),                # not mounted
    ((8, 0), "8:0", ""),                  # unknown device
])
def test_resolver_without_kubernetes(sysfs: Path, tmp_path: Path, devnum, device, mount) -> None:
    dev = _resolver(sysfs, tmp_path).describe(*devnum)
    assert (dev.device, dev.mount, dev.pvc, dev.pvc_namespace) == (device, mount, "", "")


def test_resolver_names_the_claim_of_the_pod_volume_on_the_device(sysfs: Path, tmp_path: Path) -> None:
    asked = []

    def claims(pod_uid: str, volume: str) -> tuple[str, str] | None:
        asked.append((pod_uid, volume))
        return ("data-postgres-0", "oltp") if (pod_uid, volume) == (POD, PV) else None

    r = _resolver(sysfs, tmp_path, claims)
    dev = r.describe(254, 16)
    assert (dev.device, dev.pvc, dev.pvc_namespace) == ("vdb", "data-postgres-0", "oltp")
    assert dev.mount.endswith("/globalmount")  # the mount outside the pod's own directory
    assert r.describe(254, 0).pvc == ""  # root disk: no pod volume on it
    assert asked == [(POD, PV)]          # the projected tmpfs volume is not a block device's


def test_resolver_caches_and_refreshes_after_ttl(sysfs: Path, tmp_path: Path) -> None:
    now = [100.0]
    r = _resolver(sysfs, tmp_path, ttl=30.0, clock=lambda: now[0])
    assert r.describe(7, 3).mount == ""
    (tmp_path / "mountinfo").write_text(K3S_MOUNTINFO + "700 28 7:3 / /mnt/scratch rw - ext4 /dev/loop3 rw\n")
    now[0] += 29
    assert r.describe(7, 3).mount == ""           # cached
    now[0] += 2
    assert r.describe(7, 3).mount == "/mnt/scratch"  # mounted since: seen after the TTL


def test_resolver_on_this_machine() -> None:
    """The real /sys and mount table: the disk holding / is named and mounted at /."""
    import os

    st = os.stat("/")
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    if major == 0:
        pytest.skip("/ is not on a block device here (overlay/tmpfs root)")
    disk = Path(os.path.realpath(f"/sys/dev/block/{major}:{minor}"))
    if (disk / "partition").exists():  # the block tracepoints report the whole disk
        disk = disk.parent
        major, minor = (int(x) for x in (disk / "dev").read_text().split(":"))
    dev = BlockDeviceResolver().describe(major, minor)
    assert (dev.device, dev.mount) == (disk.name, "/")
